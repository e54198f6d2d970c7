//! Logging to the server log through the host's `log` import, tagged by the
//! host with backend, hook and task. Lines over 1 KiB are truncated and calls
//! are rate-limited by the host, so log decisions, not data.
//!
//! ```no_run
//! hook_sdk::info!("{} boxes above threshold", 3);
//! hook_sdk::warn!("label '{}' is not in the config, skipped", "cat");
//! ```

pub use crate::bindings::pre::cls::hooks::host::Level;

/// Writes one line at `level`.
pub fn log(level: Level, message: &str) {
    crate::bindings::pre::cls::hooks::host::log(level, message);
}

/// Logs at trace level, `format!` style.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)*)) };
}

/// Logs at debug level, `format!` style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)*)) };
}

/// Logs at info level, `format!` style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs at warn level, `format!` style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs at error level, `format!` style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)*)) };
}
