//! `<Labels>`, `<RectangleLabels>`, `<PolygonLabels>`, `<KeyPointLabels>`,
//! `<BrushLabels>`, `<EllipseLabels>`, `<HyperTextLabels>`,
//! `<ParagraphLabels>`, `<TimeSeriesLabels>`: options are `<Label value alias>`
//! children, and a result lists the chosen ones under its type
//! (`"rectanglelabels": ["Cat"]`). Coordinates are [`super::geometry`]'s job.

use serde_json::{Map, Value};

use super::{invalid, string_list};
use crate::control::{Control, LabelDef};
use crate::error::ValidationError;

/// The `<Label>` options anywhere inside the control tag.
pub(crate) fn parse(node: roxmltree::Node<'_, '_>) -> Vec<LabelDef> {
    node.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "Label")
        .filter_map(|n| {
            Some(LabelDef {
                value: n.attribute("value")?.to_owned(),
                alias: n.attribute("alias").map(str::to_owned),
                path: Vec::new(),
            })
        })
        .collect()
}

/// Every label in `value[<type>]` must be one of the control's.
pub(crate) fn validate(
    control: &Control,
    value: &Map<String, Value>,
    location: &str,
) -> Result<(), ValidationError> {
    let key = control.kind.result_type();
    for (i, label) in string_list(value, &key, location)?.into_iter().enumerate() {
        if !control.accepts_label(label) {
            return Err(invalid(
                format!("{location}.{key}[{i}]"),
                not_in_control(label, "label", control),
            ));
        }
    }
    Ok(())
}

/// `label 'Cat' is not in RectangleLabels 'label' (expected one of: Dog, Person)`.
pub(crate) fn not_in_control(label: &str, what: &str, control: &Control) -> String {
    let expected: Vec<&str> = control.label_values().collect();
    format!(
        "{what} '{label}' is not in {} '{}' (expected one of: {})",
        control.kind,
        control.name,
        if expected.is_empty() {
            "nothing, it has no options".to_owned()
        } else {
            expected.join(", ")
        }
    )
}
