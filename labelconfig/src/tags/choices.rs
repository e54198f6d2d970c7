//! `<Choices>` and `<Taxonomy>`: options are `<Choice value alias>` children
//! (nested for `<Taxonomy>`). A `choices` result lists chosen values; a
//! `taxonomy` result lists paths from the top-level choice down.

use serde_json::{Map, Value};

use super::labels::not_in_control;
use super::{invalid, json_type, string_list};
use crate::control::{Control, LabelDef};
use crate::error::ValidationError;

/// The `<Choice>` options anywhere inside a `<Choices>` tag.
pub(crate) fn parse(node: roxmltree::Node<'_, '_>) -> Vec<LabelDef> {
    node.descendants()
        .filter(|n| is_choice(n))
        .filter_map(|n| choice(n, Vec::new()))
        .collect()
}

/// The `<Choice>` tree of a `<Taxonomy>`, flattened with each option's path.
pub(crate) fn parse_tree(node: roxmltree::Node<'_, '_>) -> Vec<LabelDef> {
    let mut out = Vec::new();
    collect_tree(node, &mut Vec::new(), &mut out);
    out
}

fn collect_tree(node: roxmltree::Node<'_, '_>, path: &mut Vec<String>, out: &mut Vec<LabelDef>) {
    for child in node.children().filter(|n| n.is_element()) {
        if is_choice(&child) {
            let Some(def) = choice(child, path.clone()) else {
                continue;
            };
            path.push(def.value.clone());
            out.push(def);
            collect_tree(child, path, out);
            path.pop();
        } else {
            // Choices may sit inside layout tags such as <View>.
            collect_tree(child, path, out);
        }
    }
}

fn is_choice(node: &roxmltree::Node<'_, '_>) -> bool {
    node.is_element() && node.tag_name().name() == "Choice"
}

fn choice(node: roxmltree::Node<'_, '_>, path: Vec<String>) -> Option<LabelDef> {
    Some(LabelDef {
        value: node.attribute("value")?.to_owned(),
        alias: node.attribute("alias").map(str::to_owned),
        path,
    })
}

/// `value.choices` must list known choices, at most one unless `choice="multiple"`.
pub(crate) fn validate(
    control: &Control,
    value: &Map<String, Value>,
    location: &str,
) -> Result<(), ValidationError> {
    let chosen = string_list(value, "choices", location)?;
    for (i, label) in chosen.iter().enumerate() {
        if !control.accepts_label(label) {
            return Err(invalid(
                format!("{location}.choices[{i}]"),
                not_in_control(label, "choice", control),
            ));
        }
    }
    if chosen.len() > 1 && !control.choice.allows_many() {
        return Err(invalid(
            format!("{location}.choices"),
            format!(
                "{} choices given but Choices '{}' allows one (add choice=\"multiple\" to the config to allow more)",
                chosen.len(),
                control.name
            ),
        ));
    }
    Ok(())
}

/// `value.taxonomy` must be a list of paths, each naming nested choices that exist.
pub(crate) fn validate_taxonomy(
    control: &Control,
    value: &Map<String, Value>,
    location: &str,
) -> Result<(), ValidationError> {
    let loc = format!("{location}.taxonomy");
    let Some(Value::Array(paths)) = value.get("taxonomy") else {
        let got = value.get("taxonomy").map_or("nothing", json_type);
        return Err(invalid(
            loc,
            format!("expected a list of paths (lists of strings), got {got}"),
        ));
    };
    for (i, path) in paths.iter().enumerate() {
        let Value::Array(steps) = path else {
            return Err(invalid(
                format!("{loc}[{i}]"),
                format!("expected a list of strings, got {}", json_type(path)),
            ));
        };
        let mut prefix: Vec<String> = Vec::new();
        for (j, step) in steps.iter().enumerate() {
            let Some(step) = step.as_str() else {
                return Err(invalid(
                    format!("{loc}[{i}][{j}]"),
                    format!("expected a string, got {}", json_type(step)),
                ));
            };
            let known = control.dynamic_labels
                || control.labels.iter().any(|l| {
                    l.path == prefix && (l.value == step || l.alias.as_deref() == Some(step))
                });
            if !known {
                let expected: Vec<&str> = control
                    .labels
                    .iter()
                    .filter(|l| l.path == prefix)
                    .map(|l| l.value.as_str())
                    .collect();
                return Err(invalid(
                    format!("{loc}[{i}][{j}]"),
                    format!(
                        "'{step}' is not a choice of Taxonomy '{}' at this level (expected one of: {})",
                        control.name,
                        expected.join(", ")
                    ),
                ));
            }
            prefix.push(step.to_owned());
        }
    }
    Ok(())
}
