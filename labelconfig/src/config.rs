//! [`LabelConfig`]: the parsed `<View>` and the lookups hooks and the server
//! need. Tag-specific parsing lives in [`crate::tags`]; checking predictions
//! in [`crate::validate`].

use std::collections::BTreeMap;

use crate::control::{ChoiceMode, Control, ControlKind};
use crate::error::{LookupError, ParseError};
use crate::object::{Object, ObjectKind, field_of};
use crate::tags;

/// A parsed Label Studio labeling config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelConfig {
    objects: Vec<Object>,
    controls: Vec<Control>,
}

/// A control together with one object it labels: what a result needs for
/// `from_name` and `to_name`, and the labels it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The control (`from_name`).
    pub control: &'a Control,
    /// The object (`to_name`).
    pub object: &'a Object,
}

impl<'a> Binding<'a> {
    /// The control's name, a result's `from_name`.
    pub fn from_name(&self) -> &'a str {
        &self.control.name
    }

    /// The object's name, a result's `to_name`.
    pub fn to_name(&self) -> &'a str {
        &self.object.name
    }

    /// See [`Control::resolve_label`].
    pub fn resolve_label(&self, name: &str) -> Option<&'a str> {
        self.control.resolve_label(name)
    }

    /// The control's label values in config order.
    pub fn labels(&self) -> impl Iterator<Item = &'a str> {
        self.control.label_values()
    }
}

/// Tags that only arrange or decorate the UI, or are options of a control;
/// they are neither objects nor controls.
const LAYOUT_TAGS: &[&str] = &[
    "View",
    "Header",
    "Style",
    "Label",
    "Choice",
    "Relation",
    "Relations",
    "Filter",
    "Collapse",
    "Panel",
    "Shortcut",
    "Hypertext",
    "Char",
];

impl LabelConfig {
    /// Parses a labeling config.
    ///
    /// Known object tags (`Image`, `Text`, …) and any other tag with a `name`
    /// and a `$field` value become [`Object`]s; known control tags and any
    /// other tag with a `toName` become [`Control`]s. Unknown layout tags are
    /// ignored, so configs using newer tags still parse.
    pub fn parse(xml: &str) -> Result<Self, ParseError> {
        let doc = roxmltree::Document::parse(xml)?;
        let mut objects = Vec::new();
        let mut controls = Vec::new();
        // A BTreeMap rather than a HashMap: hooks then need no WASI random seed.
        let mut names: BTreeMap<String, String> = BTreeMap::new();

        for node in doc.root_element().descendants().filter(|n| n.is_element()) {
            let tag = node.tag_name().name();
            if LAYOUT_TAGS.contains(&tag) {
                continue;
            }
            let to_name = attribute(&node, "toName");
            let control_kind = ControlKind::from_tag(tag)
                .or_else(|| to_name.map(|_| ControlKind::Other(tag.to_owned())));
            let object_kind = if control_kind.is_some() {
                None
            } else {
                ObjectKind::from_tag(tag).or_else(|| {
                    let value = node
                        .attribute("value")
                        .or_else(|| node.attribute("valueList"));
                    (node.attribute("name").is_some() && value.is_some_and(|v| v.starts_with('$')))
                        .then(|| ObjectKind::Other(tag.to_owned()))
                })
            };
            if control_kind.is_none() && object_kind.is_none() {
                continue;
            }
            let Some(name) = node.attribute("name") else {
                return Err(ParseError::MissingName {
                    tag: tag.to_owned(),
                    line: doc.text_pos_at(node.range().start).row,
                });
            };
            if let Some(first) = names.insert(name.to_owned(), tag.to_owned()) {
                return Err(ParseError::DuplicateName {
                    name: name.to_owned(),
                    first,
                    second: tag.to_owned(),
                });
            }

            if let Some(kind) = control_kind {
                controls.push(Control {
                    name: name.to_owned(),
                    to_names: to_name
                        .map(|t| {
                            t.split(',')
                                .map(str::trim)
                                .filter(|t| !t.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                    labels: tags::parse_options(&kind, node),
                    choice: ChoiceMode::from_attribute(node.attribute("choice")),
                    dynamic_labels: node.attribute("value").is_some_and(|v| v.starts_with('$')),
                    kind,
                });
            } else if let Some(kind) = object_kind {
                let value = node
                    .attribute("value")
                    .or_else(|| node.attribute("valueList"))
                    .unwrap_or_default();
                objects.push(Object {
                    name: name.to_owned(),
                    kind,
                    value: value.to_owned(),
                    field: field_of(value),
                    value_type: attribute(&node, "valueType").map(str::to_owned),
                });
            }
        }
        Ok(Self { objects, controls })
    }

    /// All object tags in config order.
    pub fn objects(&self) -> &[Object] {
        &self.objects
    }

    /// All control tags in config order.
    pub fn controls(&self) -> &[Control] {
        &self.controls
    }

    /// The object called `name`.
    pub fn object(&self, name: &str) -> Option<&Object> {
        self.objects.iter().find(|o| o.name == name)
    }

    /// The control called `name`.
    pub fn control(&self, name: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.name == name)
    }

    /// The controls of one kind, in config order.
    pub fn controls_of<'a>(
        &'a self,
        kind: &'a ControlKind,
    ) -> impl Iterator<Item = &'a Control> + 'a {
        self.controls.iter().filter(move |c| &c.kind == kind)
    }

    /// The objects of one kind, in config order.
    pub fn objects_of<'a>(&'a self, kind: &'a ObjectKind) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.iter().filter(move |o| &o.kind == kind)
    }

    /// The objects a control labels, in `toName` order; names that match no
    /// object are skipped.
    pub fn targets_of<'a>(&'a self, control: &'a Control) -> impl Iterator<Item = &'a Object> + 'a {
        control.to_names.iter().filter_map(|n| self.object(n))
    }

    /// The first control of `kind` that labels an object of `object_kind`,
    /// with that object.
    pub fn binding(
        &self,
        kind: &ControlKind,
        object_kind: &ObjectKind,
    ) -> Result<Binding<'_>, LookupError> {
        self.binding_where(
            kind,
            |o| &o.kind == object_kind,
            &format!("an <{object_kind}>"),
        )
    }

    /// The first control of `kind` with a target for which `accept` holds.
    /// `description` names the wanted object in the error, e.g. `"a text object"`.
    pub fn binding_where(
        &self,
        kind: &ControlKind,
        accept: impl Fn(&Object) -> bool,
        description: &str,
    ) -> Result<Binding<'_>, LookupError> {
        self.controls
            .iter()
            .filter(|c| &c.kind == kind)
            .find_map(|control| {
                self.targets_of(control)
                    .find(|o| accept(o))
                    .map(|object| Binding { control, object })
            })
            .ok_or_else(|| LookupError::NoBinding {
                control: kind.tag().to_owned(),
                object: description.to_owned(),
                available: self.describe_controls(),
            })
    }

    /// The binding of the control called `name` to its first target.
    pub fn binding_named(&self, name: &str) -> Result<Binding<'_>, LookupError> {
        let control = self
            .control(name)
            .ok_or_else(|| LookupError::NoControl(name.to_owned()))?;
        let object = self
            .targets_of(control)
            .next()
            .ok_or_else(|| LookupError::NoObject(control.to_names.join(",")))?;
        Ok(Binding { control, object })
    }

    /// `<Choices>` for an `<Image>`: image classification.
    pub fn choices_for_image(&self) -> Result<Binding<'_>, LookupError> {
        self.binding(&ControlKind::Choices, &ObjectKind::Image)
    }

    /// `<Choices>` for a text object (`<Text>`, `<HyperText>`, `<Paragraphs>`,
    /// `<Markdown>`): text classification.
    pub fn choices_for_text(&self) -> Result<Binding<'_>, LookupError> {
        self.binding_where(
            &ControlKind::Choices,
            |o| o.kind.is_textual(),
            "a text object",
        )
    }

    /// `<RectangleLabels>` for an `<Image>`: object detection.
    pub fn rectangle_labels_for_image(&self) -> Result<Binding<'_>, LookupError> {
        self.binding(&ControlKind::RectangleLabels, &ObjectKind::Image)
    }

    /// `<PolygonLabels>` for an `<Image>`: polygon segmentation.
    pub fn polygon_labels_for_image(&self) -> Result<Binding<'_>, LookupError> {
        self.binding(&ControlKind::PolygonLabels, &ObjectKind::Image)
    }

    /// `<KeyPointLabels>` for an `<Image>`: keypoints.
    pub fn keypoint_labels_for_image(&self) -> Result<Binding<'_>, LookupError> {
        self.binding(&ControlKind::KeyPointLabels, &ObjectKind::Image)
    }

    /// `<BrushLabels>` for an `<Image>`: mask segmentation.
    pub fn brush_labels_for_image(&self) -> Result<Binding<'_>, LookupError> {
        self.binding(&ControlKind::BrushLabels, &ObjectKind::Image)
    }

    /// `<Labels>` for a text object: named entities.
    pub fn labels_for_text(&self) -> Result<Binding<'_>, LookupError> {
        self.binding_where(
            &ControlKind::Labels,
            |o| o.kind.is_textual(),
            "a text object",
        )
    }

    /// `<TextArea>` for an object of `object_kind`: captions, transcriptions.
    pub fn textarea_for(&self, object_kind: &ObjectKind) -> Result<Binding<'_>, LookupError> {
        self.binding(&ControlKind::TextArea, object_kind)
    }

    /// `name (Tag → target)` for each control, for error messages.
    fn describe_controls(&self) -> Vec<String> {
        self.controls
            .iter()
            .map(|c| format!("{} (<{}> → {})", c.name, c.kind, c.to_names.join(",")))
            .collect()
    }
}

/// An attribute, also accepted in all-lower-case (`toname`), which Label
/// Studio's own parser tolerates.
fn attribute<'a>(node: &roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attribute(name)
        .or_else(|| node.attribute(name.to_ascii_lowercase().as_str()))
}
