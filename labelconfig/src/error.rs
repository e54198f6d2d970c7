//! Errors of this crate: one per entry point (parsing, looking up, validating).
//! Messages are written for the Label Studio user who has to fix the config or
//! the hook, so they name the tag, the field and what was expected.

use thiserror::Error;

/// Why a labeling config could not be parsed.
#[derive(Debug, Error)]
pub enum ParseError {
    /// The config is not well-formed XML.
    #[error("labeling config is not valid XML: {0}")]
    Xml(#[from] roxmltree::Error),
    /// A tag that needs a `name` attribute has none.
    #[error("<{tag}> at line {line} has no name attribute")]
    MissingName {
        /// The tag as written, e.g. `Choices`.
        tag: String,
        /// 1-based line of the tag in the config.
        line: u32,
    },
    /// Two object or control tags share a `name`.
    #[error("the name '{name}' is used by more than one tag (<{first}> and <{second}>)")]
    DuplicateName {
        /// The shared name.
        name: String,
        /// The tag that used it first.
        first: String,
        /// The tag that used it again.
        second: String,
    },
}

/// A lookup in a parsed config found nothing suitable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No control of the wanted kind points at an object of the wanted kind.
    #[error("the labeling config has no <{control}> pointing at {object}{}", available_suffix(.available))]
    NoBinding {
        /// The control tag that was looked for, e.g. `Choices`.
        control: String,
        /// The object it should label, e.g. `an <Image>` or `any object`.
        object: String,
        /// The controls the config does have, `name (Tag → target)`, for the message.
        available: Vec<String>,
    },
    /// No control has this name.
    #[error("the labeling config has no control named '{0}'")]
    NoControl(String),
    /// No object has this name.
    #[error("the labeling config has no object named '{0}'")]
    NoObject(String),
}

fn available_suffix(available: &[String]) -> String {
    if available.is_empty() {
        " (it has no control tags)".to_owned()
    } else {
        format!(" (it has: {})", available.join(", "))
    }
}

/// A prediction that Label Studio would reject or misdisplay.
///
/// `location` is a JSON path into the hook output such as
/// `[1].result[2].value.rectanglelabels` (the `[1].` prefix only when the
/// output was a list of predictions).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{location}: {message}")]
pub struct ValidationError {
    /// Where in the hook output the problem is.
    pub location: String,
    /// What is wrong and what was expected.
    pub message: String,
}
