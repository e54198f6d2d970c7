//! Files on the command line → Label Studio tasks, for `try` and
//! `configure --sample`.
//!
//! - `*.json`: a task (`{"data": {…}}`), a bare data object (`{"image": …}`,
//!   as Label Studio imports it), or a list of either.
//! - an image (PNG, JPEG, GIF, WebP, BMP, TIFF, by its magic bytes): a task
//!   whose `<Image>` field holds the file as a `data:` URI (the fetch module
//!   decodes those), so nothing is uploaded anywhere.
//! - any other UTF-8 file: a task whose text field (`<Text>`, `<HyperText>`,
//!   `<Paragraphs>`, `<Markdown>`) holds the text inline, or as a `data:`
//!   URI for `<Text valueType="url">`.
//!
//! Which field is the label config's first object of the matching kind;
//! anything richer (several objects, extra fields) needs a task JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::{Value, json};

use cls::labelconfig::{LabelConfig, ObjectKind};

/// One task and the file it came from.
#[derive(Debug, Clone)]
pub struct Input {
    /// The file (and index, for lists), for messages.
    pub source: String,
    pub task: Value,
}

/// Reads every file into tasks, numbering those without an `id` from 1.
pub fn from_files(
    paths: &[PathBuf],
    label_config: Option<&LabelConfig>,
) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        inputs.extend(from_file(path, label_config).with_context(|| path.display().to_string())?);
    }
    let mut next_id = inputs
        .iter()
        .filter_map(|i| i.task.get("id").and_then(Value::as_i64))
        .max()
        .unwrap_or(0);
    for input in &mut inputs {
        if input.task.get("id").is_none_or(Value::is_null) {
            next_id += 1;
            input.task["id"] = json!(next_id);
        }
    }
    Ok(inputs)
}

fn from_file(path: &Path, label_config: Option<&LabelConfig>) -> anyhow::Result<Vec<Input>> {
    let bytes = std::fs::read(path).context("cannot read")?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        let value: Value = serde_json::from_slice(&bytes).context("not valid JSON")?;
        return match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    Ok(Input {
                        source: format!("{name}[{i}]"),
                        task: as_task(item).with_context(|| format!("item {i}"))?,
                    })
                })
                .collect(),
            item => Ok(vec![Input {
                source: name,
                task: as_task(item)?,
            }]),
        };
    }
    let config = label_config.context(
        "an image or text file becomes a task through the label config's fields: pass --label-config",
    )?;
    if let Some(mime) = image_type(&bytes) {
        let object = first_object(config, |k| *k == ObjectKind::Image).context(
            "this is an image, but the label config has no <Image value=\"$field\"/> to put it in",
        )?;
        return Ok(vec![Input {
            source: name,
            task: json!({ "data": { object.0: data_uri(mime, &bytes) } }),
        }]);
    }
    let Ok(text) = String::from_utf8(bytes) else {
        bail!(
            "not an image this tool recognises (PNG, JPEG, GIF, WebP, BMP, TIFF), not UTF-8 text and not *.json: describe it in a task JSON"
        );
    };
    let (field, is_url) = first_object(config, ObjectKind::is_textual).context(
        "this is text, but the label config has no <Text value=\"$field\"/> (or HyperText, Paragraphs, Markdown) to put it in",
    )?;
    let value = if is_url {
        data_uri("text/plain;charset=utf-8", text.as_bytes())
    } else {
        text
    };
    Ok(vec![Input {
        source: name,
        task: json!({ "data": { field: value } }),
    }])
}

/// A task object as Label Studio imports it: `{"data": …}` as is, any other
/// object as the task's data.
fn as_task(item: Value) -> anyhow::Result<Value> {
    match item {
        Value::Object(map) if map.get("data").is_some_and(Value::is_object) => {
            Ok(Value::Object(map))
        }
        Value::Object(map) => Ok(json!({ "data": map })),
        other => bail!(
            "a task must be a JSON object, not {}",
            cls::labelconfig::json_type(&other)
        ),
    }
}

/// The data field of the first object of a kind, and whether it holds a URL.
fn first_object(
    config: &LabelConfig,
    kind: impl Fn(&ObjectKind) -> bool,
) -> Option<(String, bool)> {
    config
        .objects()
        .iter()
        .filter(|o| kind(&o.kind))
        .find_map(|o| o.field.clone().map(|f| (f, o.value_is_url())))
}

/// The media type of an image, from its first bytes (the same sniffing the
/// server applies to downloads).
pub fn image_type(b: &[u8]) -> Option<&'static str> {
    cls::fetch::sniff_media_type(b).filter(|t| t.starts_with("image/"))
}

/// `data:<mime>;base64,<bytes>`.
pub fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"<View><Image name="img" value="$picture"/><Text name="t" value="$body"/>
        <Choices name="c" toName="img"><Choice value="a"/></Choices></View>"#;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn files_become_tasks_in_the_label_configs_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LabelConfig::parse(CONFIG).expect("config");
        let png = write(dir.path(), "a.png", b"\x89PNG\r\n\x1a\nrest");
        let txt = write(dir.path(), "b.txt", "héllo".as_bytes());
        let json = write(
            dir.path(),
            "c.json",
            br#"[{"id": 7, "data": {"picture": "http://x/y.png"}}, {"body": "bare"}]"#,
        );
        let inputs = from_files(&[png, txt, json], Some(&config)).expect("tasks");
        let tasks: Vec<&Value> = inputs.iter().map(|i| &i.task).collect();
        assert!(
            tasks[0]["data"]["picture"]
                .as_str()
                .is_some_and(|v| v.starts_with("data:image/png;base64,"))
        );
        assert_eq!(tasks[1]["data"]["body"], "héllo");
        assert_eq!(tasks[2]["id"], 7);
        assert_eq!(tasks[3]["data"]["body"], "bare");
        let ids: Vec<i64> = tasks.iter().filter_map(|t| t["id"].as_i64()).collect();
        assert_eq!(ids, vec![8, 9, 7, 10]);
        assert_eq!(inputs[3].source, "c.json[1]");
    }

    #[test]
    fn an_image_without_an_image_object_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LabelConfig::parse(r#"<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>"#)
            .expect("config");
        let png = write(dir.path(), "a.png", b"\x89PNG\r\n\x1a\nrest");
        let err = from_files(&[png], Some(&config)).expect_err("no image object");
        assert!(format!("{err:#}").contains("no <Image"), "{err:#}");
    }
}
