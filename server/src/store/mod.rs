//! Where backends are kept, so that every replica serves the same ones: the
//! [`BackendStore`] trait, its types, and the shared PostgreSQL store
//! ([`postgres::PgStore`]). The single-process store is the state dir
//! ([`crate::state::StateDir`]), which implements the same trait.
//!
//! Every stored backend has a [`Generation`] that goes up by one with each
//! write (deletes included, so a re-created backend never reuses one).
//! Writers may name the generation they expect ([`Precondition`], the
//! HTTP `If-Match`), which makes concurrent writes safe: one wins, the
//! other is told the generation moved.
//!
//! Replicas report which generation of each backend they serve, and how
//! it went ([`ReplicaReport`]), so a writer can wait until all of them
//! serve its change.

pub mod postgres;
pub mod spec;

use std::fmt;
use std::str::FromStr;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use crate::backend::Generation;
use crate::backend::{BackendName, PersistedBackend};

/// What a write expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever is there.
    Any,
    /// Write only if the backend is at this generation.
    Matches(Generation),
}

impl Precondition {
    /// Whether a backend at `current` (`None`: absent) may be written.
    pub fn allows(self, current: Option<Generation>) -> bool {
        match self {
            Self::Any => true,
            Self::Matches(expected) => current == Some(expected),
        }
    }

    /// `Ok` if a backend at `current` may be written, else why not.
    pub fn check(self, name: &BackendName, current: Option<Generation>) -> Result<(), StoreError> {
        match self {
            Self::Matches(expected) if !self.allows(current) => Err(StoreError::Stale {
                name: name.clone(),
                expected,
                current,
            }),
            _ => Ok(()),
        }
    }
}

/// A stored backend and its generation.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBackend {
    pub backend: PersistedBackend,
    pub generation: Generation,
}

/// A backend's name and generation: what a replica compares with what it
/// serves, without reading any blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub name: BackendName,
    pub generation: Generation,
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached; replicas go on serving what they have.
    #[error(
        "the backend store ({store}) is unavailable: {message}; backends keep serving their last known configuration, and changes can be made again once it is back"
    )]
    Unavailable {
        store: &'static str,
        message: String,
    },
    /// `If-Match` named another generation.
    #[error("{}", stale_message(name, *expected, *current))]
    Stale {
        name: BackendName,
        expected: Generation,
        current: Option<Generation>,
    },
    /// What the store holds cannot be read back.
    #[error("backend '{name}' in the store is unreadable: {message}")]
    Corrupt { name: String, message: String },
}

fn stale_message(name: &BackendName, expected: Generation, current: Option<Generation>) -> String {
    match current {
        Some(current) => format!(
            "backend '{name}' is at generation {current}, not {expected} (If-Match): it changed since you read it; read it again and retry"
        ),
        None => format!(
            "backend '{name}' does not exist, so it is not at generation {expected} (If-Match)"
        ),
    }
}

/// How a replica's copy of a backend is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServingState {
    /// It serves this generation.
    Serving,
    /// Building this generation failed; it serves an older one, if any.
    Failed,
}

impl ServingState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serving => "serving",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "serving" {
            Self::Serving
        } else {
            Self::Failed
        }
    }
}

/// One backend on one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaReport {
    pub backend: BackendName,
    /// For `Serving`, the generation served; for `Failed`, the one that
    /// failed to build.
    pub generation: Generation,
    pub state: ServingState,
    pub error: Option<String>,
}

/// A replica as the store last heard from it.
#[derive(Debug, Clone)]
pub struct ReplicaStatus {
    pub replica: String,
    /// Seconds since its last report.
    pub heartbeat_age_s: f64,
    pub backends: Vec<ReplicaReport>,
}

impl ReplicaStatus {
    /// Whether the replica reported recently enough to count as running.
    pub fn is_live(&self) -> bool {
        self.heartbeat_age_s <= LIVE_WITHIN.as_secs_f64()
    }

    /// Its report on `backend`, if any.
    pub fn report_on(&self, backend: &BackendName) -> Option<&ReplicaReport> {
        self.backends.iter().find(|r| &r.backend == backend)
    }
}

/// How often a replica reports, even when nothing changed.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// A replica silent for longer is no longer counted as live.
pub const LIVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Where backends are kept. Methods return boxed futures so that the
/// server can hold either store as `Arc<dyn BackendStore>`.
pub trait BackendStore: Send + Sync {
    /// `dir` or `postgres`, for messages and metrics.
    fn kind(&self) -> &'static str;

    /// Whether other processes may write to this store too (then each
    /// replica follows it: see [`crate::fleet`]).
    fn is_shared(&self) -> bool;

    /// Every backend's name and generation.
    fn heads(&self) -> BoxFuture<'_, Result<Vec<Head>, StoreError>>;

    /// One backend with its files, or `None` if there is no such backend.
    fn load<'a>(
        &'a self,
        name: &'a BackendName,
    ) -> BoxFuture<'a, Result<Option<StoredBackend>, StoreError>>;

    /// Writes a backend if `expect` allows, returning its new generation.
    fn save<'a>(
        &'a self,
        backend: &'a PersistedBackend,
        expect: Precondition,
    ) -> BoxFuture<'a, Result<Generation, StoreError>>;

    /// Deletes a backend if `expect` allows; `false` if there was none.
    fn delete<'a>(
        &'a self,
        name: &'a BackendName,
        expect: Precondition,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Records what `replica` serves now (and that it is alive).
    fn report<'a>(
        &'a self,
        replica: &'a str,
        reports: &'a [ReplicaReport],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Every replica that reported recently enough to be live.
    fn replicas(&self) -> BoxFuture<'_, Result<Vec<ReplicaStatus>, StoreError>>;

    /// A counter that goes up whenever another process may have changed
    /// the store (a notification, or a reconnect after which any could
    /// have been missed); `None` when nobody else writes to it.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>>;
}

/// Where `serve --store` keeps backends.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The state dir: one process, nothing else to run.
    Dir,
    /// A PostgreSQL database shared by every replica.
    Postgres(crate::secret::Secret),
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir => f.write_str("dir"),
            Self::Postgres(_) => f.write_str("postgres://***"),
        }
    }
}

/// `--store` is neither `dir` nor a PostgreSQL URL.
#[derive(Debug, thiserror::Error)]
pub enum InvalidStoreLocation {
    #[error(
        "--store (CLS_STORE) must be `dir` or a PostgreSQL URL such as postgres://user:password@host:5432/db, not {0:?}"
    )]
    Unknown(String),
    #[error("--store (CLS_STORE): the PostgreSQL URL is malformed: {0}")]
    Malformed(String),
}

impl FromStr for StoreLocation {
    type Err = InvalidStoreLocation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "dir" {
            return Ok(Self::Dir);
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            postgres::parse_url(s).map_err(InvalidStoreLocation::Malformed)?;
            return Ok(Self::Postgres(crate::secret::Secret::new(s)));
        }
        // Echo only the scheme: the rest may hold a password.
        let shown = match s.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None if s.len() <= 32 => s.to_owned(),
            None => format!("{}…", s.chars().take(32).collect::<String>()),
        };
        Err(InvalidStoreLocation::Unknown(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_parse_bare_and_as_entity_tags() {
        assert_eq!("3".parse::<Generation>().unwrap(), Generation::new(3));
        assert_eq!("\"12\"".parse::<Generation>().unwrap(), Generation::new(12));
        for bad in ["", "0", "-1", "W/\"3\"", "abc", "\"3"] {
            assert!(bad.parse::<Generation>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn preconditions_compare_generations() {
        let g3 = Generation::new(3);
        assert!(Precondition::Any.allows(None));
        assert!(Precondition::Matches(g3).allows(Some(g3)));
        assert!(!Precondition::Matches(g3).allows(Some(g3.next())));
        assert!(!Precondition::Matches(g3).allows(None));
    }

    #[test]
    fn store_locations_parse_and_never_echo_a_password() {
        assert_eq!("dir".parse::<StoreLocation>().unwrap(), StoreLocation::Dir);
        assert!(matches!(
            "postgres://u:p@localhost:5432/db".parse::<StoreLocation>(),
            Ok(StoreLocation::Postgres(_))
        ));
        let err = "mysql://u:hunter2@h/db"
            .parse::<StoreLocation>()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("--store"), "{err}");
        let err = "postgres://u:hunter2@h:notaport/db"
            .parse::<StoreLocation>()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
