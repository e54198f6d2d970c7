//! What a hook knows about the call: [`Context`] (task, labeling config,
//! model metadata, the backend's params, the pre-hook's `carry`) and, for
//! pre-hooks, the task's [`Datapoints`].

use std::cell::OnceCell;

use labelconfig::{LabelConfig, ObjectKind};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::bindings::pre::PreOutput;
use crate::bindings::pre::cls::hooks::host::TensorOptions;
use crate::bindings::pre::cls::hooks::types::{
    Context as WitContext, Datapoint, DatapointInfo, ImageTransform, TensorSpec,
};
use crate::error::HookError;
use crate::image::{Image, ImageSize};

/// The model metadata keys [`Context::class_names`] looks in, in this
/// order: ultralytics' `names`, the `labels` and `classes` of many
/// exporters, PaddleOCR's `character`, and `id2label`, which the host adds
/// from a transformer's `config.json` when the graph has none.
pub const CLASS_NAME_KEYS: &[&str] = &["names", "labels", "classes", "character", "id2label"];

/// The call's context: task, labeling config, model description.
#[derive(Debug)]
pub struct Context {
    raw: WitContext,
    label_config: OnceCell<Result<LabelConfig, String>>,
    params: OnceCell<Result<Map<String, Value>, String>>,
}

impl Context {
    /// Wraps the context the host passed.
    pub fn new(raw: WitContext) -> Self {
        Self {
            raw,
            label_config: OnceCell::new(),
            params: OnceCell::new(),
        }
    }

    /// This context with the given params (a JSON object) instead of the
    /// backend's: for unit tests of a hook, which run outside the host.
    pub fn with_params(self, json: &str) -> Self {
        let params = OnceCell::new();
        let _ = params.set(parse_params(json));
        Self { params, ..self }
    }

    /// The backend's `params` object (`{}` when none are set), fetched from
    /// the host on first use. Prefer [`Context::param_or`] for one value.
    pub fn params(&self) -> Result<&Map<String, Value>, HookError> {
        self.params
            .get_or_init(|| parse_params(&crate::bindings::pre::cls::hooks::host::params()))
            .as_ref()
            .map_err(HookError::bad_config)
    }

    /// The parameter `key` as a `T`, or `None` when it is not set. A value
    /// of the wrong type is a configuration error that names the key.
    pub fn param<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, HookError> {
        let Some(value) = self.params()?.get(key) else {
            return Ok(None);
        };
        T::deserialize(value).map(Some).map_err(|e| {
            HookError::bad_config(format_args!(
                "params.{key} = {value} cannot be used here: {e}"
            ))
        })
    }

    /// The parameter `key` as a `T`, or `default` when it is not set.
    ///
    /// ```no_run
    /// # fn demo(ctx: &hook_sdk::Context) -> Result<(), hook_sdk::HookError> {
    /// // config: {"params": {"threshold": 0.3, "names": ["cat", "dog"]}}
    /// let threshold: f32 = ctx.param_or("threshold", 0.5)?;
    /// let names: Vec<String> = match ctx.param("names")? {
    ///     Some(names) => names,
    ///     None => ctx.class_names()?,
    /// };
    /// # Ok(()) }
    /// ```
    pub fn param_or<T: DeserializeOwned>(&self, key: &str, default: T) -> Result<T, HookError> {
        Ok(self.param(key)?.unwrap_or(default))
    }

    /// The Label Studio task as JSON text.
    pub fn task_json(&self) -> &str {
        &self.raw.task_json
    }

    /// The Label Studio task, parsed.
    pub fn task(&self) -> Result<Value, HookError> {
        serde_json::from_str(&self.raw.task_json)
            .map_err(|e| HookError::bad_input(format_args!("task is not JSON: {e}")))
    }

    /// The task id, when the task has one.
    pub fn task_id(&self) -> Option<i64> {
        self.raw.task_id
    }

    /// The labeling config, parsed on first use.
    ///
    /// ```no_run
    /// # fn demo(ctx: &hook_sdk::Context) -> Result<(), hook_sdk::HookError> {
    /// let target = ctx.label_config()?.choices_for_image()?;
    /// # Ok(()) }
    /// ```
    pub fn label_config(&self) -> Result<&LabelConfig, HookError> {
        self.label_config
            .get_or_init(|| LabelConfig::parse(&self.raw.label_config).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(HookError::bad_config)
    }

    /// The labeling config as XML.
    pub fn label_config_xml(&self) -> &str {
        &self.raw.label_config
    }

    /// The model version the backend reports; predictions default to it.
    pub fn model_version(&self) -> &str {
        &self.raw.model_version
    }

    /// Interactive pre-annotation context (`params.context`) as JSON, when present.
    pub fn interactive_context(&self) -> Option<&str> {
        self.raw.interactive_context.as_deref()
    }

    /// The model's declared inputs.
    pub fn model_inputs(&self) -> &[TensorSpec] {
        &self.raw.model_inputs
    }

    /// The model's declared outputs.
    pub fn model_outputs(&self) -> &[TensorSpec] {
        &self.raw.model_outputs
    }

    /// The model's first input: the image or text input of most models.
    pub fn first_input(&self) -> Result<&TensorSpec, HookError> {
        self.raw
            .model_inputs
            .first()
            .ok_or_else(|| HookError::bad_config("the model declares no inputs"))
    }

    /// A model metadata value (ONNX `metadata_props`).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.raw
            .model_metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The model's class names, from the first metadata key of
    /// [`CLASS_NAME_KEYS`] that it has; see [`Context::class_names_in`].
    ///
    /// ```no_run
    /// # fn demo(ctx: &hook_sdk::Context) -> Result<(), hook_sdk::HookError> {
    /// let names = ctx.class_names()?; // e.g. ["0", "90", "180", "270"]
    /// # Ok(()) }
    /// ```
    pub fn class_names(&self) -> Result<Vec<String>, HookError> {
        self.class_names_in(CLASS_NAME_KEYS)
    }

    /// Class names stored in model metadata under the first of `keys` that
    /// exists, in any of the usual encodings: one per line (PaddleOCR's
    /// `character`), a JSON list, or a Python dict `{0: 'person', …}`
    /// (ultralytics' `names`). See [`parse_class_names`].
    pub fn class_names_in(&self, keys: &[&str]) -> Result<Vec<String>, HookError> {
        let (key, value) = keys
            .iter()
            .find_map(|k| self.metadata(k).map(|v| (*k, v)))
            .ok_or_else(|| {
                let present: Vec<&str> = self
                    .raw
                    .model_metadata
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect();
                HookError::bad_config(format_args!(
                    "the model has no class names in its metadata (looked for {}; it has: {})",
                    keys.join(", "),
                    if present.is_empty() {
                        "no metadata".to_owned()
                    } else {
                        present.join(", ")
                    }
                ))
            })?;
        let names = parse_class_names(value);
        if names.is_empty() {
            return Err(HookError::bad_config(format_args!(
                "model metadata '{key}' lists no class names"
            )));
        }
        Ok(names)
    }

    /// The task's datapoints with image sizes and transforms (post-hook only).
    pub fn datapoints(&self) -> &[DatapointInfo] {
        &self.raw.datapoints
    }

    /// Whatever the pre-hook returned as `carry` (post-hook only).
    pub fn carry(&self) -> Option<&str> {
        self.raw.carry.as_deref()
    }

    /// How the image was mapped onto the model input: the pre-hook's
    /// `carry` when it holds a transform (see [`PreOutput::with_transform`]),
    /// else the transform the host's built-in pre-hook recorded for the
    /// first image datapoint.
    pub fn image_transform(&self) -> Result<ImageTransform, HookError> {
        if let Some(carry) = self.carry()
            && let Ok(t) = ImageTransform::from_json(carry)
        {
            return Ok(t);
        }
        self.raw.datapoints.iter().find_map(|d| d.transform).ok_or_else(|| {
            HookError::bad_config(
                "no image transform: the pre-hook passed none in carry and the host recorded none \
                 (is the model input an image?)",
            )
        })
    }

    /// The underlying WIT record.
    pub fn raw(&self) -> &WitContext {
        &self.raw
    }
}

/// The host's params text as an object.
fn parse_params(json: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(json) {
        Ok(Value::Object(params)) => Ok(params),
        Ok(other) => Err(format!("the host's params are not a JSON object: {other}")),
        Err(e) => Err(format!("the host's params are not JSON: {e}")),
    }
}

/// Splits a metadata value into class names; see [`Context::class_names`].
///
/// ```
/// use hook_sdk::context::parse_class_names;
/// assert_eq!(parse_class_names("0\n90\n180\n270"), ["0", "90", "180", "270"]);
/// assert_eq!(parse_class_names(r#"["cat", "dog"]"#), ["cat", "dog"]);
/// assert_eq!(parse_class_names("{0: 'person', 1: \"bicycle\", 2: 'it''s'}")[..2], ["person", "bicycle"]);
/// ```
pub fn parse_class_names(value: &str) -> Vec<String> {
    let trimmed = value.trim();
    if trimmed.starts_with('[')
        && let Ok(names) = serde_json::from_str::<Vec<String>>(trimmed)
    {
        return names;
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // Python literal: collect quoted strings that are values (after ':')
        // for dicts, or every quoted string for lists.
        let is_dict = trimmed.starts_with('{');
        let mut names = Vec::new();
        let mut chars = trimmed.chars().peekable();
        let mut after_colon = !is_dict;
        while let Some(c) = chars.next() {
            match c {
                ':' => after_colon = true,
                ',' if is_dict => after_colon = false,
                '\'' | '"' => {
                    let mut s = String::new();
                    while let Some(n) = chars.next() {
                        if n == '\\' {
                            if let Some(escaped) = chars.next() {
                                s.push(escaped);
                            }
                        } else if n == c {
                            break;
                        } else {
                            s.push(n);
                        }
                    }
                    if after_colon {
                        names.push(s);
                    }
                }
                _ => {}
            }
        }
        return names;
    }
    value
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The task's datapoints as the pre-hook receives them.
#[derive(Debug, Clone, PartialEq)]
pub struct Datapoints(Vec<Datapoint>);

impl Datapoints {
    /// Wraps the datapoints the host passed.
    pub fn new(datapoints: Vec<Datapoint>) -> Self {
        Self(datapoints)
    }

    /// The datapoint for task data key `field`.
    pub fn get(&self, field: &str) -> Option<&Datapoint> {
        self.0.iter().find(|d| d.field == field)
    }

    /// All datapoints.
    pub fn iter(&self) -> std::slice::Iter<'_, Datapoint> {
        self.0.iter()
    }

    /// Number of datapoints.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The image to run the model on: the field of the config's first
    /// `<Image>` when there is one, else the first datapoint whose content
    /// type is `image/*`.
    pub fn image(&self, ctx: &Context) -> Result<&Datapoint, HookError> {
        self.for_object(
            ctx,
            &ObjectKind::Image,
            |d| d.content_type.starts_with("image/"),
            "image",
        )
    }

    /// The text to run the model on: the field of the config's first text
    /// object (`<Text>`, `<HyperText>`, …), else the first `text/*` datapoint.
    pub fn text(&self, ctx: &Context) -> Result<&Datapoint, HookError> {
        let field = ctx.label_config().ok().and_then(|c| {
            c.objects()
                .iter()
                .find(|o| o.kind.is_textual())
                .and_then(|o| o.field.clone())
        });
        self.pick(
            field.as_deref(),
            |d| d.content_type.starts_with("text/"),
            "text",
        )
    }

    fn for_object(
        &self,
        ctx: &Context,
        kind: &ObjectKind,
        fallback: impl Fn(&Datapoint) -> bool,
        what: &str,
    ) -> Result<&Datapoint, HookError> {
        let field = ctx
            .label_config()
            .ok()
            .and_then(|c| c.objects_of(kind).next().and_then(|o| o.field.clone()));
        self.pick(field.as_deref(), fallback, what)
    }

    fn pick(
        &self,
        field: Option<&str>,
        fallback: impl Fn(&Datapoint) -> bool,
        what: &str,
    ) -> Result<&Datapoint, HookError> {
        field
            .and_then(|f| self.get(f))
            .or_else(|| self.0.iter().find(|d| fallback(d)))
            .ok_or_else(|| {
                let fields: Vec<String> = self
                    .0
                    .iter()
                    .map(|d| format!("{} ({})", d.field, d.content_type))
                    .collect();
                HookError::bad_input(format_args!(
                    "the task has no {what} to run the model on (datapoints: {})",
                    if fields.is_empty() {
                        "none".to_owned()
                    } else {
                        fields.join(", ")
                    }
                ))
            })
    }
}

impl Datapoint {
    /// The data as UTF-8 text.
    pub fn text(&self) -> Result<&str, HookError> {
        std::str::from_utf8(&self.data).map_err(|e| {
            HookError::bad_input(format_args!(
                "task field '{}' is not UTF-8 text: {e}",
                self.field
            ))
        })
    }

    /// Decodes the data as an image, upright as Label Studio shows it (EXIF
    /// orientation applied).
    pub fn decode_image(&self) -> Result<Image, HookError> {
        Image::decode(&self.data, true).map_err(|e| {
            HookError::bad_input(format_args!("task field '{}': {}", self.field, e.message()))
        })
    }
}

impl TensorSpec {
    /// Width and height of an image input laid out NCHW (`[N, C, H, W]`)
    /// when both are fixed; `None` for dynamic sizes or other ranks.
    ///
    /// ```
    /// use hook_sdk::{ElementType, ImageSize, TensorSpec};
    /// let spec = TensorSpec { name: "image".into(), element_type: ElementType::F32, shape: vec![1, 3, 800, 608] };
    /// assert_eq!(spec.nchw_size(), Some(ImageSize { width: 608, height: 800 }));
    /// let dynamic = TensorSpec { shape: vec![-1, 3, -1, -1], ..spec };
    /// assert_eq!(dynamic.nchw_size(), None);
    /// ```
    pub fn nchw_size(&self) -> Option<ImageSize> {
        match self.shape.as_slice() {
            [_, _, h, w] if *h > 0 && *w > 0 => Some(ImageSize {
                width: u32::try_from(*w).ok()?,
                height: u32::try_from(*h).ok()?,
            }),
            _ => None,
        }
    }
}

impl PreOutput {
    /// The model inputs, no carry.
    pub fn new(inputs: Vec<crate::Tensor>) -> Self {
        Self {
            inputs,
            carry: None,
        }
    }

    /// The usual pre-hook result for one image: `image` as the model's
    /// only input (handed to the host with [`Image::set_input`], never
    /// copied into the hook) and its transform passed to the post-hook (see
    /// [`PreOutput::with_transform`]), so boxes and outlines map back onto
    /// the original.
    ///
    /// ```no_run
    /// # use hook_sdk::{Context, Datapoints, HookError, PreOutput, TensorOptions};
    /// fn pre_hook(data: &Datapoints, ctx: &Context) -> Result<PreOutput, HookError> {
    ///     let image = data.image(ctx)?.decode_image()?.resize(640, 640, hook_sdk::Filter::Bilinear)?;
    ///     PreOutput::from_image(&image, &TensorOptions::imagenet(&ctx.first_input()?.name))
    /// }
    /// ```
    pub fn from_image(image: &Image, options: &TensorOptions) -> Result<Self, HookError> {
        image.set_input(options)?;
        Ok(Self::new(Vec::new()).with_transform(&image.transform()))
    }

    /// Passes `carry` to the post-hook as `ctx.carry()`.
    pub fn with_carry(mut self, carry: impl Into<String>) -> Self {
        self.carry = Some(carry.into());
        self
    }

    /// Passes the image transform to the post-hook, where
    /// [`Context::image_transform`] finds it.
    pub fn with_transform(self, transform: &ImageTransform) -> Self {
        self.with_carry(transform.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(label_config: &str, metadata: &[(&str, &str)], carry: Option<String>) -> Context {
        Context::new(WitContext {
            task_json: r#"{"id": 3, "data": {"image": "x.png"}}"#.into(),
            task_id: Some(3),
            label_config: label_config.into(),
            model_version: "v1".into(),
            interactive_context: None,
            model_inputs: vec![],
            model_outputs: vec![],
            model_metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            datapoints: vec![],
            carry,
        })
    }

    #[test]
    fn params_are_read_typed_with_defaults() {
        let c = ctx("<View/>", &[], None)
            .with_params(r#"{"threshold": 0.3, "names": ["cat", "dog"], "mode": "fast"}"#);
        assert_eq!(c.param_or("threshold", 0.5f32).unwrap(), 0.3);
        assert_eq!(c.param_or("missing", 0.5f32).unwrap(), 0.5);
        assert_eq!(
            c.param::<Vec<String>>("names").unwrap(),
            Some(vec!["cat".to_owned(), "dog".to_owned()])
        );
        assert_eq!(c.param::<u32>("absent").unwrap(), None);
        let err = c.param_or("mode", 1u32).unwrap_err().to_string();
        assert!(err.contains("params.mode = \"fast\""), "{err}");
        assert!(err.contains("expected u32"), "{err}");
    }

    #[test]
    fn params_that_are_not_an_object_are_a_config_error() {
        let c = ctx("<View/>", &[], None).with_params("[1]");
        let err = c.param_or("k", 1u32).unwrap_err().to_string();
        assert!(err.contains("not a JSON object"), "{err}");
    }

    #[test]
    fn class_names_come_from_the_first_key_present() {
        let c = ctx("<View/>", &[("character", "text\ntitle\n")], None);
        assert_eq!(
            c.class_names_in(&["names", "character"]).unwrap(),
            ["text", "title"]
        );
        assert_eq!(c.class_names().unwrap(), ["text", "title"]);
        let err = c.class_names_in(&["labels"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "bad config: the model has no class names in its metadata (looked for labels; it has: character)"
        );
    }

    #[test]
    fn python_dicts_and_lists_parse() {
        assert_eq!(parse_class_names("{0: 'a, b', 1: 'c'}"), ["a, b", "c"]);
        assert_eq!(parse_class_names("['x', 'y']"), ["x", "y"]);
        assert_eq!(
            parse_class_names("negative\r\npositive"),
            ["negative", "positive"]
        );
    }

    #[test]
    fn a_broken_label_config_is_a_config_error_every_time() {
        let c = ctx("<View", &[], None);
        assert!(matches!(c.label_config(), Err(HookError::BadConfig(_))));
        assert!(
            matches!(c.label_config(), Err(HookError::BadConfig(_))),
            "cached error is returned again"
        );
    }

    #[test]
    fn the_transform_comes_from_carry() {
        let t = ImageTransform::identity(100, 50).then_resize(10, 10);
        let c = ctx("<View/>", &[], Some(t.to_json()));
        assert_eq!(c.image_transform().unwrap(), t);
        assert!(
            ctx("<View/>", &[], Some("junk".into()))
                .image_transform()
                .is_err()
        );
    }

    #[test]
    fn datapoints_are_picked_by_the_configs_object_field() {
        let c = ctx(
            r#"<View><Image name="i" value="$photo"/></View>"#,
            &[],
            None,
        );
        let dp = |field: &str, ct: &str| Datapoint {
            field: field.into(),
            uri: None,
            content_type: ct.into(),
            data: b"hi".to_vec(),
        };
        let data = Datapoints::new(vec![
            dp("thumb", "image/png"),
            dp("photo", "image/jpeg"),
            dp("caption", "text/plain"),
        ]);
        assert_eq!(data.image(&c).unwrap().field, "photo");
        assert_eq!(data.text(&c).unwrap().text().unwrap(), "hi");
        let none = Datapoints::new(vec![dp("caption", "text/plain")]);
        assert_eq!(
            none.image(&ctx("<View/>", &[], None))
                .unwrap_err()
                .to_string(),
            "bad input: the task has no image to run the model on (datapoints: caption (text/plain))"
        );
    }
}
