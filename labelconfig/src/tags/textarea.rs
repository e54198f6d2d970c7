//! `<TextArea>`: free text. A result carries `"text": ["…", …]`.

use serde_json::{Map, Value};

use super::string_list;
use crate::error::ValidationError;

pub(crate) fn validate(value: &Map<String, Value>, location: &str) -> Result<(), ValidationError> {
    string_list(value, "text", location).map(drop)
}
