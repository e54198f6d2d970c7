//! A backend's hook parameters: the `params` object of its config, which
//! both hooks read at run time (`params()` in the WIT) instead of compiling
//! values in: thresholds, class names for a model without metadata, label
//! maps. Changing them needs a new configure but no new hook build.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest `params` object, as compact JSON. Every hook call gets a copy,
/// so this is per-task memory, not a place for data files.
pub const MAX_PARAMS_BYTES: usize = 64 << 10;

/// A JSON object of at most [`MAX_PARAMS_BYTES`], kept with its compact
/// JSON text, which is what hooks receive and what the model version hashes.
/// Cheap to clone: every task's hook context holds one.
#[derive(Debug, Clone, PartialEq)]
pub struct HookParams {
    values: Arc<Map<String, Value>>,
    json: Arc<str>,
}

/// Why a `params` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidParams {
    #[error(
        "params must be a JSON object such as {{\"threshold\": 0.5}}, not {0}; \
         hooks read each key with a typed getter"
    )]
    NotAnObject(&'static str),
    #[error(
        "params is {size} bytes as JSON; at most {max} are allowed \
         (hooks get a copy on every call: ship large data inside the hook instead)",
        max = MAX_PARAMS_BYTES
    )]
    TooLarge { size: usize },
}

impl HookParams {
    /// Checks `value` and keeps it.
    pub fn new(value: Value) -> Result<Self, InvalidParams> {
        let Value::Object(values) = value else {
            return Err(InvalidParams::NotAnObject(crate::labelconfig::json_type(
                &value,
            )));
        };
        let json = Value::Object(values.clone()).to_string();
        if json.len() > MAX_PARAMS_BYTES {
            return Err(InvalidParams::TooLarge { size: json.len() });
        }
        Ok(Self {
            values: Arc::new(values),
            json: json.into(),
        })
    }

    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The object as compact JSON (`{}` when empty).
    pub fn json(&self) -> &Arc<str> {
        &self.json
    }

    /// The parameters by name.
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    /// Sets one parameter (`try --param key=value`), checking the size again.
    pub fn with(self, key: &str, value: Value) -> Result<Self, InvalidParams> {
        let mut values = Arc::unwrap_or_clone(self.values);
        values.insert(key.to_owned(), value);
        Self::new(Value::Object(values))
    }
}

impl Default for HookParams {
    fn default() -> Self {
        Self {
            values: Arc::default(),
            json: Arc::from("{}"),
        }
    }
}

impl Serialize for HookParams {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HookParams {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_is_kept_with_its_compact_json() {
        let params = HookParams::new(json!({"threshold": 0.5, "names": ["a", "b"]})).unwrap();
        assert_eq!(&**params.json(), r#"{"names":["a","b"],"threshold":0.5}"#);
        assert!(!params.is_empty());
    }

    #[test]
    fn no_params_read_as_an_empty_object() {
        let params = HookParams::default();
        assert!(params.is_empty());
        assert_eq!(&**params.json(), "{}");
    }

    #[test]
    fn anything_but_an_object_is_refused_by_kind() {
        let err = HookParams::new(json!([0.5])).unwrap_err();
        assert_eq!(err, InvalidParams::NotAnObject("a list"));
        assert!(err.to_string().contains("must be a JSON object"), "{err}");
    }

    #[test]
    fn an_object_over_the_cap_is_refused_with_its_size() {
        let big = "x".repeat(MAX_PARAMS_BYTES);
        let err = HookParams::new(json!({ "big": big })).unwrap_err();
        let InvalidParams::TooLarge { size } = err else {
            panic!("{err}")
        };
        assert_eq!(size, MAX_PARAMS_BYTES + 10);
        let err = HookParams::default().with("big", json!(big)).unwrap_err();
        assert!(err.to_string().contains("at most 65536"), "{err}");
    }

    #[test]
    fn a_config_deserializes_and_serializes_the_object_itself() {
        let params: HookParams = serde_json::from_value(json!({"k": 1})).unwrap();
        assert_eq!(serde_json::to_value(&params).unwrap(), json!({"k": 1}));
        let err = serde_json::from_value::<HookParams>(json!("k=1")).unwrap_err();
        assert!(err.to_string().contains("not a string"), "{err}");
    }
}
