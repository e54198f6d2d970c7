//! Label Studio predictions: [`Region`] builders for each result type, in the
//! exact JSON shapes Label Studio stores (coordinates in percent of the
//! original image, `original_width`/`original_height` set), and
//! [`Prediction`], which a post-hook returns.
//!
//! ```
//! use hook_sdk::{BBox, ImageSize, Prediction, Region, RegionIds};
//!
//! let size = ImageSize { width: 640, height: 480 };
//! let dog = Region::rectangle_labels(("label", "image"), &BBox::from_xywh(64.0, 48.0, 320.0, 240.0), size, ["Dog"])
//!     .with_score(0.9);
//! let json = Prediction::new(vec![dog]).with_score(0.9).to_json(&mut RegionIds::new(Some(7)), "v1");
//! assert_eq!(json["model_version"], "v1");
//! let region = &json["result"][0];
//! assert_eq!(region["id"], "t7-r1");
//! assert_eq!(region["type"], "rectanglelabels");
//! assert_eq!(region["original_width"], 640);
//! assert_eq!(region["value"]["x"], 10.0);
//! assert_eq!(region["value"]["rectanglelabels"][0], "Dog");
//! ```

use serde_json::{Map, Value, json};

use crate::boxes::BBox;
use crate::contours::Mask;
use crate::image::ImageSize;
use crate::polygon::Point;
use crate::rle;

/// Where a region goes: the control (`from_name`) and the object (`to_name`).
/// Build it from a [`labelconfig::Binding`] so it matches the project's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The control's name.
    pub from_name: String,
    /// The object's name.
    pub to_name: String,
}

impl From<labelconfig::Binding<'_>> for Target {
    fn from(b: labelconfig::Binding<'_>) -> Self {
        Self {
            from_name: b.from_name().to_owned(),
            to_name: b.to_name().to_owned(),
        }
    }
}

impl From<&labelconfig::Binding<'_>> for Target {
    fn from(b: &labelconfig::Binding<'_>) -> Self {
        Self::from(*b)
    }
}

impl From<(&str, &str)> for Target {
    fn from((from_name, to_name): (&str, &str)) -> Self {
        Self {
            from_name: from_name.to_owned(),
            to_name: to_name.to_owned(),
        }
    }
}

impl From<&Target> for Target {
    fn from(t: &Target) -> Self {
        t.clone()
    }
}

/// One result item of a prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    id: Option<String>,
    target: Target,
    kind: String,
    value: Map<String, Value>,
    score: Option<f64>,
    original_size: Option<ImageSize>,
}

fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
    Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect())
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

impl Region {
    /// A result of any type: `kind` is the control tag in lower case and
    /// `value` its value object. Prefer the typed constructors.
    pub fn new(
        target: impl Into<Target>,
        kind: impl Into<String>,
        value: Map<String, Value>,
    ) -> Self {
        Self {
            id: None,
            target: target.into(),
            kind: kind.into(),
            value,
            score: None,
            original_size: None,
        }
    }

    /// `choices`: classification of the whole object.
    ///
    /// ```
    /// use hook_sdk::Region;
    /// let r = Region::choices(("sentiment", "text"), ["positive"]).with_score(0.97);
    /// assert_eq!(r.value()["choices"][0], "positive");
    /// ```
    pub fn choices<S: Into<String>>(
        target: impl Into<Target>,
        choices: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::new(
            target,
            "choices",
            object(json!({ "choices": strings(choices) })),
        )
    }

    /// The most probable class that the control knows, as a `choices` region
    /// scored with its probability. Classes are looked up by name with
    /// [`labelconfig::Binding::resolve_label`]; those the config lacks are
    /// skipped. `None` when the config knows none of them.
    ///
    /// ```
    /// use hook_sdk::labelconfig::LabelConfig;
    /// use hook_sdk::Region;
    ///
    /// let config = LabelConfig::parse(r#"<View><Image name="image" value="$image"/>
    ///   <Choices name="rotation" toName="image"><Choice value="0"/><Choice value="180"/></Choices></View>"#)?;
    /// let names = ["0", "90", "180", "270"].map(String::from);
    /// // "90" is the most probable but not in the config, so "180" is chosen.
    /// let region = Region::top_choice(&config.choices_for_image()?, &names, &[0.1, 0.6, 0.25, 0.05]).unwrap();
    /// assert_eq!(region.value()["choices"][0], "180");
    /// assert_eq!(region.score(), Some(0.25));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn top_choice(
        binding: &labelconfig::Binding<'_>,
        class_names: &[String],
        probabilities: &[f32],
    ) -> Option<Self> {
        crate::ops::top_k(probabilities, probabilities.len())
            .into_iter()
            .find_map(|(class, p)| {
                let label = binding.resolve_label(class_names.get(class)?)?;
                Some(Self::choices(binding, [label]).with_score(crate::ops::widen(p)))
            })
    }

    /// Every class the control knows whose probability is at least
    /// `threshold`, most probable first, as one `choices` region (multi-label
    /// classification: `<Choices choice="multiple">`, probabilities from a
    /// sigmoid), scored with the highest of them. `None` when no known class
    /// reaches the threshold.
    ///
    /// ```
    /// use hook_sdk::labelconfig::LabelConfig;
    /// use hook_sdk::Region;
    ///
    /// let config = LabelConfig::parse(r#"<View><Text name="text" value="$text"/>
    ///   <Choices name="topics" toName="text" choice="multiple">
    ///     <Choice value="sport"/><Choice value="politics"/><Choice value="science"/></Choices></View>"#)?;
    /// let names = ["sport", "politics", "science"].map(String::from);
    /// let region = Region::choices_above(&config.choices_for_text()?, &names, &[0.7, 0.2, 0.9], 0.5).unwrap();
    /// assert_eq!(region.value()["choices"], serde_json::json!(["science", "sport"]));
    /// assert_eq!(region.score(), Some(0.9));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn choices_above(
        binding: &labelconfig::Binding<'_>,
        class_names: &[String],
        probabilities: &[f32],
        threshold: f32,
    ) -> Option<Self> {
        let chosen: Vec<(&str, f32)> = crate::ops::top_k(probabilities, probabilities.len())
            .into_iter()
            .filter(|&(_, p)| p >= threshold)
            .filter_map(|(class, p)| Some((binding.resolve_label(class_names.get(class)?)?, p)))
            .collect();
        let best = chosen.first()?.1;
        Some(
            Self::choices(binding, chosen.into_iter().map(|(label, _)| label))
                .with_score(crate::ops::widen(best)),
        )
    }

    /// `labels` on text: the characters `start..end` (offsets in Unicode
    /// code points, as Label Studio counts them in `<Text>`), with the span's text.
    pub fn text_span<S: Into<String>>(
        target: impl Into<Target>,
        start: usize,
        end: usize,
        text: &str,
        labels: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::new(
            target,
            "labels",
            object(json!({ "start": start, "end": end, "text": text, "labels": strings(labels) })),
        )
    }

    /// `rectanglelabels`: `bbox` in original-image pixels, stored in percent of `size`.
    pub fn rectangle_labels<S: Into<String>>(
        target: impl Into<Target>,
        bbox: &BBox,
        size: ImageSize,
        labels: impl IntoIterator<Item = S>,
    ) -> Self {
        let r = bbox.to_percent(size);
        Self::new(
            target,
            "rectanglelabels",
            object(json!({
                "x": r.x, "y": r.y, "width": r.width, "height": r.height, "rotation": 0,
                "rectanglelabels": strings(labels),
            })),
        )
        .with_original_size(size)
    }

    /// `polygonlabels`: `points` in original-image pixels, stored in percent of `size`.
    pub fn polygon_labels<S: Into<String>>(
        target: impl Into<Target>,
        points: &[Point],
        size: ImageSize,
        labels: impl IntoIterator<Item = S>,
    ) -> Self {
        let points: Vec<[f64; 2]> = points.iter().map(|p| p.to_percent(size)).collect();
        Self::new(
            target,
            "polygonlabels",
            object(json!({ "points": points, "polygonlabels": strings(labels) })),
        )
        .with_original_size(size)
    }

    /// `keypointlabels`: `point` in original-image pixels; `width` is the
    /// point's display size in percent (Label Studio's default tool uses ~0.5).
    pub fn keypoint_labels<S: Into<String>>(
        target: impl Into<Target>,
        point: Point,
        width: f64,
        size: ImageSize,
        labels: impl IntoIterator<Item = S>,
    ) -> Self {
        let [x, y] = point.to_percent(size);
        Self::new(
            target,
            "keypointlabels",
            object(json!({ "x": x, "y": y, "width": width, "keypointlabels": strings(labels) })),
        )
        .with_original_size(size)
    }

    /// `brushlabels`: a mask the size of the original image, RLE-encoded
    /// as Label Studio's brush tool expects.
    pub fn brush_labels<S: Into<String>>(
        target: impl Into<Target>,
        mask: &Mask,
        labels: impl IntoIterator<Item = S>,
    ) -> Self {
        let size = ImageSize {
            width: mask.width() as u32,
            height: mask.height() as u32,
        };
        Self::new(
            target,
            "brushlabels",
            object(json!({ "format": "rle", "rle": rle::encode_mask(mask), "brushlabels": strings(labels) })),
        )
        .with_original_size(size)
    }

    /// `textarea`: free text (captions, transcriptions).
    pub fn textarea<S: Into<String>>(
        target: impl Into<Target>,
        texts: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::new(
            target,
            "textarea",
            object(json!({ "text": strings(texts) })),
        )
    }

    /// Sets the region's confidence.
    pub fn with_score(mut self, score: f64) -> Self {
        self.score = Some(score);
        self
    }

    /// Sets the region id; regions of different controls describing the
    /// same thing (an OCR box and its transcription) share one.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets `original_width`/`original_height`.
    pub fn with_original_size(mut self, size: ImageSize) -> Self {
        self.original_size = Some(size);
        self
    }

    /// Adds or replaces a key of the value object (e.g. `rotation`, or the
    /// coordinates of a per-region `textarea`).
    pub fn with_value(mut self, key: impl Into<String>, value: Value) -> Self {
        self.value.insert(key.into(), value);
        self
    }

    /// The result type, e.g. `rectanglelabels`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The value object.
    pub fn value(&self) -> &Map<String, Value> {
        &self.value
    }

    /// The confidence, if set.
    pub fn score(&self) -> Option<f64> {
        self.score
    }

    /// The id, if set.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The region as Label Studio JSON; `ids` supplies an id when none was set.
    pub fn to_json(&self, ids: &mut RegionIds) -> Value {
        let mut out = Map::new();
        out.insert(
            "id".into(),
            Value::String(self.id.clone().unwrap_or_else(|| ids.next_id())),
        );
        out.insert(
            "from_name".into(),
            Value::String(self.target.from_name.clone()),
        );
        out.insert("to_name".into(), Value::String(self.target.to_name.clone()));
        out.insert("type".into(), Value::String(self.kind.clone()));
        if let Some(size) = self.original_size {
            out.insert("original_width".into(), size.width.into());
            out.insert("original_height".into(), size.height.into());
            out.insert("image_rotation".into(), 0.into());
        }
        out.insert("value".into(), Value::Object(self.value.clone()));
        if let Some(score) = self.score.filter(|s| s.is_finite()) {
            out.insert("score".into(), json!(score));
        }
        Value::Object(out)
    }
}

/// Region ids for one call: `t<task>-r<n>` (or `r<n>` without a task id),
/// unique within the task's predictions and stable across runs, so the same
/// model output always serialises the same way.
#[derive(Debug, Clone)]
pub struct RegionIds {
    prefix: String,
    next: u64,
}

impl RegionIds {
    /// Ids for the task with this id.
    pub fn new(task_id: Option<i64>) -> Self {
        Self {
            prefix: task_id.map(|t| format!("t{t}-")).unwrap_or_default(),
            next: 0,
        }
    }

    /// The next id.
    pub fn next_id(&mut self) -> String {
        self.next += 1;
        format!("{}r{}", self.prefix, self.next)
    }
}

/// One Label Studio prediction: regions, an overall score, the model version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prediction {
    /// The regions.
    pub result: Vec<Region>,
    /// Overall confidence; Label Studio sorts and filters tasks by it.
    pub score: Option<f64>,
    /// Model version; `None` uses the backend's (keep it so: Label Studio
    /// re-requests predictions whose version differs from the backend's).
    pub model_version: Option<String>,
}

impl Prediction {
    /// A prediction with these regions.
    pub fn new(result: Vec<Region>) -> Self {
        Self {
            result,
            ..Self::default()
        }
    }

    /// A prediction with no regions: what a post-hook returns when the
    /// model found nothing the labeling config can show.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The classifier's answer: [`Region::top_choice`] as the only region,
    /// the prediction scored like it. When the config knows none of the
    /// classes, a warning naming them goes to the server log and the
    /// prediction is [empty](Prediction::empty).
    ///
    /// ```no_run
    /// # use hook_sdk::{ops, Context, HookError, Outputs, Prediction};
    /// fn post_hook(out: &Outputs, ctx: &Context) -> Result<Prediction, HookError> {
    ///     let target = ctx.label_config()?.choices_for_image()?;
    ///     let names = ctx.class_names()?;
    ///     let scores = out.only()?.to_f32()?;
    ///     let probabilities = ops::as_probabilities(scores.first_item());
    ///     Ok(Prediction::top_choice(&target, &names, &probabilities))
    /// }
    /// ```
    pub fn top_choice(
        binding: &labelconfig::Binding<'_>,
        class_names: &[String],
        probabilities: &[f32],
    ) -> Self {
        match Region::top_choice(binding, class_names, probabilities) {
            Some(region) => Self::new(vec![region]).with_mean_region_score(),
            None => {
                crate::warn!("{}", no_known_choice(binding, class_names));
                Self::empty()
            }
        }
    }

    /// Sets the overall score.
    pub fn with_score(mut self, score: f64) -> Self {
        self.score = Some(score);
        self
    }

    /// Sets the overall score to the mean of the region scores, if any region has one.
    pub fn with_mean_region_score(mut self) -> Self {
        let scores: Vec<f64> = self.result.iter().filter_map(Region::score).collect();
        if !scores.is_empty() {
            self.score = Some(scores.iter().sum::<f64>() / scores.len() as f64);
        }
        self
    }

    /// Overrides the model version.
    pub fn with_model_version(mut self, version: impl Into<String>) -> Self {
        self.model_version = Some(version.into());
        self
    }

    /// The prediction as Label Studio JSON.
    pub fn to_json(&self, ids: &mut RegionIds, default_model_version: &str) -> Value {
        let mut out = Map::new();
        out.insert(
            "result".into(),
            Value::Array(self.result.iter().map(|r| r.to_json(ids)).collect()),
        );
        if let Some(score) = self.score.filter(|s| s.is_finite()) {
            out.insert("score".into(), json!(score));
        }
        out.insert(
            "model_version".into(),
            Value::String(
                self.model_version
                    .clone()
                    .unwrap_or_else(|| default_model_version.to_owned()),
            ),
        );
        Value::Object(out)
    }
}

/// Why [`Prediction::top_choice`] came back empty, for the server log.
fn no_known_choice(binding: &labelconfig::Binding<'_>, class_names: &[String]) -> String {
    format!(
        "none of the model's classes ({}) is a choice of '{}'",
        class_names.join(", "),
        binding.from_name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_the_task() {
        let mut ids = RegionIds::new(Some(42));
        assert_eq!(
            (ids.next_id(), ids.next_id()),
            ("t42-r1".to_owned(), "t42-r2".to_owned())
        );
        assert_eq!(RegionIds::new(None).next_id(), "r1");
    }

    #[test]
    fn explicit_ids_are_kept_and_shared_ids_allowed() {
        let mut ids = RegionIds::new(None);
        let a = Region::textarea(("t", "i"), ["x"])
            .with_id("same")
            .to_json(&mut ids);
        let b = Region::textarea(("l", "i"), ["x"]).to_json(&mut ids);
        assert_eq!(a["id"], "same");
        assert_eq!(b["id"], "r1");
    }

    #[test]
    fn polygons_are_in_percent_of_the_original_size() {
        let size = ImageSize {
            width: 200,
            height: 100,
        };
        let pts = [
            Point::new(0.0, 0.0),
            Point::new(200.0, 0.0),
            Point::new(100.0, 50.0),
        ];
        let json = Region::polygon_labels(("label", "image"), &pts, size, ["Text"])
            .to_json(&mut RegionIds::new(None));
        assert_eq!(
            json["value"]["points"],
            json!([[0.0, 0.0], [100.0, 0.0], [50.0, 50.0]])
        );
        assert_eq!(
            (
                json["original_width"].as_u64(),
                json["original_height"].as_u64()
            ),
            (Some(200), Some(100))
        );
    }

    #[test]
    fn brush_regions_carry_rle_and_the_mask_size() {
        let mut mask = Mask::new(3, 2);
        mask.set(0, 0, true);
        let json = Region::brush_labels(("tag", "image"), &mask, ["Car"])
            .to_json(&mut RegionIds::new(None));
        assert_eq!(json["value"]["format"], "rle");
        assert_eq!(json["original_width"], 3);
        let bytes: Vec<u8> = json["value"]["rle"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(rle::decode(&bytes).unwrap()[..4], [255; 4]);
    }

    #[test]
    fn text_spans_and_keypoints_have_label_studio_shapes() {
        let span = Region::text_span(("label", "text"), 0, 5, "Paris", ["LOC"]);
        assert_eq!(
            Value::Object(span.value().clone()),
            json!({"start": 0, "end": 5, "text": "Paris", "labels": ["LOC"]})
        );
        let kp = Region::keypoint_labels(
            ("kp", "img"),
            Point::new(50.0, 25.0),
            0.5,
            ImageSize {
                width: 100,
                height: 100,
            },
            ["Nose"],
        );
        assert_eq!(kp.value()["x"], 50.0);
        assert_eq!(kp.value()["y"], 25.0);
    }

    #[test]
    fn prediction_defaults_to_the_backend_version_and_skips_nan_scores() {
        let p = Prediction::new(vec![
            Region::choices(("c", "i"), ["a"]).with_score(f64::NAN),
        ])
        .with_score(f64::NAN);
        let json = p.to_json(&mut RegionIds::new(None), "backend-v3");
        assert_eq!(json["model_version"], "backend-v3");
        assert!(json.get("score").is_none());
        assert!(json["result"][0].get("score").is_none());
        let p = Prediction::new(vec![
            Region::choices(("c", "i"), ["a"]).with_score(0.2),
            Region::choices(("c", "i"), ["b"]).with_score(0.4),
        ])
        .with_mean_region_score()
        .with_model_version("mine");
        assert!((p.score.unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(
            p.to_json(&mut RegionIds::new(None), "x")["model_version"],
            "mine"
        );
    }

    fn rotation_config() -> labelconfig::LabelConfig {
        labelconfig::LabelConfig::parse(
            r#"<View><Image name="image" value="$image"/>
              <Choices name="rotation" toName="image"><Choice value="0"/><Choice value="180"/></Choices></View>"#,
        )
        .unwrap()
    }

    #[test]
    fn the_top_choice_prediction_is_scored_like_its_region() {
        let config = rotation_config();
        let target = config.choices_for_image().unwrap();
        let names = ["0", "90", "180", "270"].map(String::from);
        let p = Prediction::top_choice(&target, &names, &[0.1, 0.6, 0.25, 0.05]);
        assert_eq!(p.result.len(), 1);
        assert_eq!(p.result[0].value()["choices"][0], "180");
        assert_eq!(p.score, Some(0.25));
    }

    #[test]
    fn no_known_choice_names_the_classes_and_the_control() {
        let config = rotation_config();
        let target = config.choices_for_image().unwrap();
        let names = ["90", "270"].map(String::from);
        assert!(Region::top_choice(&target, &names, &[0.5, 0.5]).is_none());
        assert_eq!(
            no_known_choice(&target, &names),
            "none of the model's classes (90, 270) is a choice of 'rotation'"
        );
        assert_eq!(Prediction::empty(), Prediction::new(vec![]));
    }
}
