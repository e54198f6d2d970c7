//! Object tags: the task data a project labels (`<Image>`, `<Text>`, …).
//! Controls point at them by name through `toName`.

use std::fmt;

/// The kind of an object tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `<Image>`: an image URL (or a gallery through `valueList`).
    Image,
    /// `<Text>`: inline text, or a URL with `valueType="url"`.
    Text,
    /// `<HyperText>`: HTML.
    HyperText,
    /// `<Audio>`.
    Audio,
    /// `<AudioPlus>` (older name of `<Audio>`).
    AudioPlus,
    /// `<Video>`.
    Video,
    /// `<TimeSeries>`.
    TimeSeries,
    /// `<Paragraphs>`: dialogue-like lists of utterances.
    Paragraphs,
    /// `<Table>`: key/value data.
    Table,
    /// `<Pdf>`.
    Pdf,
    /// `<List>`: items for `<Ranker>`.
    List,
    /// `<Markdown>`.
    Markdown,
    /// `<Chat>`.
    Chat,
    /// Any other tag with a `name` and a `$field` value, as written.
    Other(String),
}

impl ObjectKind {
    /// The kind for a known object tag name, or `None` when `tag` is not one.
    pub fn from_tag(tag: &str) -> Option<Self> {
        Some(match tag {
            "Image" => Self::Image,
            "Text" => Self::Text,
            "HyperText" => Self::HyperText,
            "Audio" => Self::Audio,
            "AudioPlus" => Self::AudioPlus,
            "Video" => Self::Video,
            "TimeSeries" => Self::TimeSeries,
            "Paragraphs" => Self::Paragraphs,
            "Table" => Self::Table,
            "Pdf" | "PDF" => Self::Pdf,
            "List" => Self::List,
            "Markdown" => Self::Markdown,
            "Chat" => Self::Chat,
            _ => return None,
        })
    }

    /// The tag name as Label Studio spells it.
    pub fn tag(&self) -> &str {
        match self {
            Self::Image => "Image",
            Self::Text => "Text",
            Self::HyperText => "HyperText",
            Self::Audio => "Audio",
            Self::AudioPlus => "AudioPlus",
            Self::Video => "Video",
            Self::TimeSeries => "TimeSeries",
            Self::Paragraphs => "Paragraphs",
            Self::Table => "Table",
            Self::Pdf => "Pdf",
            Self::List => "List",
            Self::Markdown => "Markdown",
            Self::Chat => "Chat",
            Self::Other(tag) => tag,
        }
    }

    /// Whether the object's data is text the host can feed a model as a
    /// string (`<Text>`, `<HyperText>`, `<Paragraphs>`, `<Markdown>`).
    pub fn is_textual(&self) -> bool {
        matches!(
            self,
            Self::Text | Self::HyperText | Self::Paragraphs | Self::Markdown
        )
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// One object tag of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The `name` attribute, which controls use in `toName` and results in `to_name`.
    pub name: String,
    /// What kind of data this is.
    pub kind: ObjectKind,
    /// The `value` attribute as written, e.g. `$image`.
    pub value: String,
    /// The task data key the object reads: `image` for `value="$image"`, or
    /// for `valueList="$images"`. `None` when the value is not a `$field`.
    pub field: Option<String>,
    /// The `valueType` attribute (`url` makes `<Text>` a link to the text).
    pub value_type: Option<String>,
}

impl Object {
    /// Whether the task data holds a URL to fetch rather than the data itself:
    /// always for media, and for `<Text valueType="url">`.
    pub fn value_is_url(&self) -> bool {
        if self.kind.is_textual() {
            self.value_type.as_deref() == Some("url")
        } else {
            true
        }
    }
}

/// The task data key named by a `$field` attribute value.
pub(crate) fn field_of(value: &str) -> Option<String> {
    let field = value.strip_prefix('$')?.trim();
    (!field.is_empty()).then(|| field.to_owned())
}
