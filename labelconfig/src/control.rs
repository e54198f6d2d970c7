//! Control tags: what an annotation (or a prediction) may say about an object.
//! A control names its objects in `toName` and its options in `<Label>` or
//! `<Choice>` children; a result's `type` is the control tag in lower case.

use std::fmt;

use crate::tags::Geometry;

/// The kind of a control tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlKind {
    /// `<Choices>`: classification of the whole object (or a region, `perRegion`).
    Choices,
    /// `<Taxonomy>`: hierarchical choices.
    Taxonomy,
    /// `<Labels>`: spans of text, audio or time.
    Labels,
    /// `<HyperTextLabels>`: spans of HTML.
    HyperTextLabels,
    /// `<ParagraphLabels>`: spans of paragraphs.
    ParagraphLabels,
    /// `<TimeSeriesLabels>`: time ranges.
    TimeSeriesLabels,
    /// `<RectangleLabels>`: labeled boxes.
    RectangleLabels,
    /// `<PolygonLabels>`: labeled polygons.
    PolygonLabels,
    /// `<KeyPointLabels>`: labeled points.
    KeyPointLabels,
    /// `<BrushLabels>`: labeled masks (RLE).
    BrushLabels,
    /// `<EllipseLabels>`: labeled ellipses.
    EllipseLabels,
    /// `<Rectangle>`: boxes without labels.
    Rectangle,
    /// `<Polygon>`: polygons without labels.
    Polygon,
    /// `<KeyPoint>`: points without labels.
    KeyPoint,
    /// `<Brush>`: masks without labels.
    Brush,
    /// `<Ellipse>`: ellipses without labels.
    Ellipse,
    /// `<VideoRectangle>`: box tracks in a video.
    VideoRectangle,
    /// `<TextArea>`: free text (transcriptions, captions, OCR).
    TextArea,
    /// `<Rating>`: stars.
    Rating,
    /// `<Number>`.
    Number,
    /// `<DateTime>`.
    DateTime,
    /// Any other tag with a `toName`, as written (`Ranker`, `Pairwise`, …).
    Other(String),
}

impl ControlKind {
    /// The kind for a known control tag name, or `None` when `tag` is not one.
    pub fn from_tag(tag: &str) -> Option<Self> {
        Some(match tag {
            "Choices" => Self::Choices,
            "Taxonomy" => Self::Taxonomy,
            "Labels" => Self::Labels,
            "HyperTextLabels" => Self::HyperTextLabels,
            "ParagraphLabels" => Self::ParagraphLabels,
            "TimeSeriesLabels" => Self::TimeSeriesLabels,
            "RectangleLabels" => Self::RectangleLabels,
            "PolygonLabels" => Self::PolygonLabels,
            "KeyPointLabels" => Self::KeyPointLabels,
            "BrushLabels" => Self::BrushLabels,
            "EllipseLabels" => Self::EllipseLabels,
            "Rectangle" => Self::Rectangle,
            "Polygon" => Self::Polygon,
            "KeyPoint" => Self::KeyPoint,
            "Brush" => Self::Brush,
            "Ellipse" => Self::Ellipse,
            "VideoRectangle" => Self::VideoRectangle,
            "TextArea" => Self::TextArea,
            "Rating" => Self::Rating,
            "Number" => Self::Number,
            "DateTime" => Self::DateTime,
            _ => return None,
        })
    }

    /// The tag name as Label Studio spells it.
    pub fn tag(&self) -> &str {
        match self {
            Self::Choices => "Choices",
            Self::Taxonomy => "Taxonomy",
            Self::Labels => "Labels",
            Self::HyperTextLabels => "HyperTextLabels",
            Self::ParagraphLabels => "ParagraphLabels",
            Self::TimeSeriesLabels => "TimeSeriesLabels",
            Self::RectangleLabels => "RectangleLabels",
            Self::PolygonLabels => "PolygonLabels",
            Self::KeyPointLabels => "KeyPointLabels",
            Self::BrushLabels => "BrushLabels",
            Self::EllipseLabels => "EllipseLabels",
            Self::Rectangle => "Rectangle",
            Self::Polygon => "Polygon",
            Self::KeyPoint => "KeyPoint",
            Self::Brush => "Brush",
            Self::Ellipse => "Ellipse",
            Self::VideoRectangle => "VideoRectangle",
            Self::TextArea => "TextArea",
            Self::Rating => "Rating",
            Self::Number => "Number",
            Self::DateTime => "DateTime",
            Self::Other(tag) => tag,
        }
    }

    /// The result `type` Label Studio uses for this control: the tag in lower case.
    pub fn result_type(&self) -> String {
        self.tag().to_ascii_lowercase()
    }

    /// Whether the control's options are `<Label>` children whose values a
    /// result lists under the result type (`"rectanglelabels": ["Cat"]`).
    pub fn has_labels(&self) -> bool {
        matches!(
            self,
            Self::Labels
                | Self::HyperTextLabels
                | Self::ParagraphLabels
                | Self::TimeSeriesLabels
                | Self::RectangleLabels
                | Self::PolygonLabels
                | Self::KeyPointLabels
                | Self::BrushLabels
                | Self::EllipseLabels
        )
    }

    /// Whether the control's options are `<Choice>` children.
    pub fn has_choices(&self) -> bool {
        matches!(self, Self::Choices | Self::Taxonomy)
    }

    /// The region shape a result of this control carries, if any.
    pub fn geometry(&self) -> Option<Geometry> {
        Some(match self {
            Self::RectangleLabels | Self::Rectangle => Geometry::Rectangle,
            Self::PolygonLabels | Self::Polygon => Geometry::Polygon,
            Self::KeyPointLabels | Self::KeyPoint => Geometry::KeyPoint,
            Self::BrushLabels | Self::Brush => Geometry::Brush,
            Self::EllipseLabels | Self::Ellipse => Geometry::Ellipse,
            Self::Labels
            | Self::HyperTextLabels
            | Self::ParagraphLabels
            | Self::TimeSeriesLabels => Geometry::Span,
            Self::VideoRectangle => Geometry::VideoSequence,
            _ => return None,
        })
    }

    /// The key a result's `value` must have for this control, e.g.
    /// `choices`, `rectanglelabels`, `text` or, for unlabeled shapes, the
    /// shape's main coordinate key.
    pub fn value_key(&self) -> String {
        match self {
            Self::TextArea => "text".to_owned(),
            Self::Rectangle | Self::KeyPoint | Self::Ellipse => "x".to_owned(),
            Self::Polygon => "points".to_owned(),
            Self::Brush => "rle".to_owned(),
            Self::VideoRectangle => "sequence".to_owned(),
            other => other.result_type(),
        }
    }
}

impl fmt::Display for ControlKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// `choice` attribute of `<Choices>`: how many choices one result may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChoiceMode {
    /// `single` (the default): at most one.
    #[default]
    Single,
    /// `single-radio`: at most one, shown as radio buttons.
    SingleRadio,
    /// `multiple`: any number.
    Multiple,
}

impl ChoiceMode {
    /// Parses the attribute; unknown values fall back to Label Studio's default.
    pub fn from_attribute(value: Option<&str>) -> Self {
        match value {
            Some("multiple") => Self::Multiple,
            Some("single-radio") => Self::SingleRadio,
            _ => Self::Single,
        }
    }

    /// Whether a result may carry more than one choice.
    pub fn allows_many(self) -> bool {
        self == Self::Multiple
    }
}

/// One `<Label>` or `<Choice>` of a control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelDef {
    /// The `value` attribute: what results carry.
    pub value: String,
    /// The `alias` attribute, a second accepted spelling.
    pub alias: Option<String>,
    /// For `<Taxonomy>`: the values of the enclosing `<Choice>`s, outermost
    /// first; empty for top-level options and for every other control.
    pub path: Vec<String>,
}

/// One control tag of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The `name` attribute: results carry it as `from_name`.
    pub name: String,
    /// What kind of control this is.
    pub kind: ControlKind,
    /// The objects it labels (`toName`, split at commas).
    pub to_names: Vec<String>,
    /// Its `<Label>`/`<Choice>` options in config order.
    pub labels: Vec<LabelDef>,
    /// `choice` attribute of `<Choices>`.
    pub choice: ChoiceMode,
    /// Set when the options come from the task (`value="$options"`), so any
    /// label is acceptable.
    pub dynamic_labels: bool,
}

impl Control {
    /// The label values, in config order.
    pub fn label_values(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(|l| l.value.as_str())
    }

    /// The label value a model's class name stands for: the exact value,
    /// else the label whose `alias` it is, else a value equal ignoring ASCII
    /// case (models often say `text` where configs say `Text`). `None` when
    /// the control has no such label.
    pub fn resolve_label(&self, name: &str) -> Option<&str> {
        let found = self
            .labels
            .iter()
            .find(|l| l.value == name)
            .or_else(|| {
                self.labels
                    .iter()
                    .find(|l| l.alias.as_deref() == Some(name))
            })
            .or_else(|| {
                self.labels
                    .iter()
                    .find(|l| l.value.eq_ignore_ascii_case(name))
            })?;
        Some(&found.value)
    }

    /// Whether a result may carry `label` as written (value or alias).
    pub fn accepts_label(&self, label: &str) -> bool {
        self.dynamic_labels
            || self
                .labels
                .iter()
                .any(|l| l.value == label || l.alias.as_deref() == Some(label))
    }

    /// Whether this control labels the object called `object_name`.
    pub fn targets(&self, object_name: &str) -> bool {
        self.to_names.iter().any(|t| t == object_name)
    }
}
