//! [`HookError`]: why a hook gave up on a task. It becomes the WIT
//! `hook-error` the host reports to the Label Studio user, so messages should
//! say what to fix.

use std::fmt::Display;

use thiserror::Error;

use crate::bindings::pre::cls::hooks::types::HookError as WitHookError;

/// Why a hook gave up on a task.
///
/// ```
/// use hook_sdk::HookError;
///
/// let e = HookError::bad_config(format_args!("model has {} outputs, expected 1", 3));
/// assert_eq!(e.to_string(), "bad config: model has 3 outputs, expected 1");
/// assert_eq!(e.message(), "model has 3 outputs, expected 1");
/// ```
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HookError {
    /// The task's data is not what the hook can handle (not an image, empty text, …).
    #[error("bad input: {0}")]
    BadInput(String),
    /// The model output or the labeling config is not what the hook expects.
    #[error("bad config: {0}")]
    BadConfig(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl HookError {
    /// A [`HookError::BadInput`].
    pub fn bad_input(message: impl Display) -> Self {
        Self::BadInput(message.to_string())
    }

    /// A [`HookError::BadConfig`].
    pub fn bad_config(message: impl Display) -> Self {
        Self::BadConfig(message.to_string())
    }

    /// A [`HookError::Failed`].
    pub fn failed(message: impl Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::BadInput(m) | Self::BadConfig(m) | Self::Failed(m) => m,
        }
    }
}

impl From<HookError> for WitHookError {
    fn from(e: HookError) -> Self {
        match e {
            HookError::BadInput(m) => Self::BadInput(m),
            HookError::BadConfig(m) => Self::BadConfig(m),
            HookError::Failed(m) => Self::Failed(m),
        }
    }
}

impl From<labelconfig::LookupError> for HookError {
    fn from(e: labelconfig::LookupError) -> Self {
        Self::BadConfig(e.to_string())
    }
}

impl From<labelconfig::ParseError> for HookError {
    fn from(e: labelconfig::ParseError) -> Self {
        Self::BadConfig(e.to_string())
    }
}

impl From<serde_json::Error> for HookError {
    fn from(e: serde_json::Error) -> Self {
        Self::Failed(format!("JSON: {e}"))
    }
}
