//! Turning uploaded bytes into a callable [`Hook`]: validation, compilation
//! off the request path, the world check, and the use of the
//! compiled-artefact cache (`artefacts`).

use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{post::PostHookPre, pre::PreHookPre};
use super::host::HostState;
use super::{HookKind, HookLoadError, HookRuntime};

/// A compiled hook, ready to be instantiated per call. Cheap to share
/// behind an `Arc`; in-flight calls keep the version they started with.
pub struct Hook {
    pub(super) kind: HookKind,
    pub(super) compiled: Compiled,
    info: HookInfo,
}

pub(super) enum Compiled {
    Pre(PreHookPre<HostState>),
    Post(PostHookPre<HostState>),
}

/// What the admin API reports about a hook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookInfo {
    pub kind: HookKind,
    pub sha256: String,
    /// The hash of the sources the component says it was built from
    /// ([`super::stamp`]), when it carries one.
    pub source_sha256: Option<String>,
    pub size: usize,
    /// Time spent compiling (or loading the cached artefact).
    pub load_ms: f64,
    /// Whether the compiled artefact came from the on-disk cache.
    pub from_cache: bool,
}

impl HookInfo {
    /// What names this hook in a backend's `model_version`: its source
    /// stamp when it has one (rebuilds of unchanged sources keep it), else
    /// the SHA-256 of its bytes.
    pub fn version_id(&self) -> &str {
        self.source_sha256.as_deref().unwrap_or(&self.sha256)
    }
}

impl Hook {
    pub fn kind(&self) -> HookKind {
        self.kind
    }

    pub fn info(&self) -> &HookInfo {
        &self.info
    }
}

const WASM_MAGIC: &[u8] = b"\0asm";
/// How often a long compile logs that it is still running.
const COMPILE_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Version field of a core module; components use a different layer/version.
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

impl HookRuntime {
    /// Validates and compiles an uploaded component as a hook of `kind`.
    /// Compilation runs on a blocking thread under the runtime's compile-time
    /// cap, in one of `compile_slots` slots handed out first come, first
    /// served, so one slow upload delays no other backend's configure.
    pub async fn load(&self, kind: HookKind, bytes: Bytes) -> Result<Hook, HookLoadError> {
        check_upload(kind, &bytes, self.options.max_upload_bytes)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let started = Instant::now();
        let (component, from_cache) = self.compile_cached(kind, bytes.clone(), &sha256).await?;
        let compiled = self.link(kind, &component)?;
        let info = HookInfo {
            kind,
            sha256,
            source_sha256: super::stamp::read(&bytes),
            size: bytes.len(),
            load_ms: started.elapsed().as_secs_f64() * 1e3,
            from_cache,
        };
        tracing::info!(
            hook = %kind, sha256 = %info.sha256, size = info.size, from_cache,
            "hook loaded in {:.1} ms", info.load_ms
        );
        Ok(Hook {
            kind,
            compiled,
            info,
        })
    }

    async fn compile_cached(
        &self,
        kind: HookKind,
        bytes: Bytes,
        sha256: &str,
    ) -> Result<(Component, bool), HookLoadError> {
        let cache = self.artefacts.as_ref();
        if let Some(component) = cache.and_then(|c| c.load(&self.engine, sha256)) {
            return Ok((component, true));
        }
        let permit =
            self.compiles
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| HookLoadError::Internal {
                    kind,
                    message: e.to_string(),
                })?;
        // The same upload may have been compiled while we waited for the
        // permit (two backends configured with one hook): compile it once.
        if let Some(component) = cache.and_then(|c| c.load(&self.engine, sha256)) {
            return Ok((component, true));
        }
        let component = self.compile_with_progress(kind, bytes, permit).await?;
        if let Some(cache) = cache {
            cache.store(&component, sha256);
        }
        Ok((component, false))
    }

    /// Compiles on a blocking thread under the compile-time cap, logging
    /// progress: a componentize-py component (about 19 MiB of CPython) takes
    /// seconds, and whoever waits on `/configure` should see why.
    async fn compile_with_progress(
        &self,
        kind: HookKind,
        bytes: Bytes,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Component, HookLoadError> {
        let size = bytes.len();
        tracing::info!(hook = %kind, size, "compiling {kind} ({:.1} MiB)", size as f64 / (1 << 20) as f64);
        let started = Instant::now();
        let engine = self.engine.clone();
        let limit = self.options.compile_timeout;
        // A compile cannot be interrupted; past the cap we stop waiting and
        // report, but the compile slot travels with the blocking job and is
        // freed only when the compile really ends, so a flood of slow uploads
        // cannot pile up threads beyond the slots.
        let mut job = tokio::task::spawn_blocking(move || {
            let compiled = Component::new(&engine, &bytes);
            drop(permit);
            compiled
        });
        let deadline = tokio::time::Instant::now() + limit;
        let joined = loop {
            let tick = (tokio::time::Instant::now() + COMPILE_PROGRESS_EVERY).min(deadline);
            match tokio::time::timeout_at(tick, &mut job).await {
                Ok(joined) => break joined,
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(HookLoadError::CompileTimeout { kind, limit });
                }
                Err(_) => tracing::info!(
                    hook = %kind, size,
                    "still compiling {kind} after {:.0} s (limit {} s)",
                    started.elapsed().as_secs_f64(),
                    limit.as_secs()
                ),
            }
        };
        let component = joined
            .map_err(|join| HookLoadError::Internal {
                kind,
                message: join.to_string(),
            })?
            .map_err(|e| HookLoadError::Invalid {
                kind,
                message: format!("{e:#}"),
            })?;
        tracing::info!(
            hook = %kind, size,
            "compiled {kind} in {:.0} ms", started.elapsed().as_secs_f64() * 1e3
        );
        Ok(component)
    }

    /// Resolves the component's imports against our linker and checks that
    /// it exports the world it was uploaded as.
    fn link(&self, kind: HookKind, component: &Component) -> Result<Compiled, HookLoadError> {
        let wrong_world = |message: String| HookLoadError::WrongWorld { kind, message };
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| {
            wrong_world(format!(
                "it imports something this server does not provide: {e:#}"
            ))
        })?;
        let linked = match kind {
            HookKind::Pre => PreHookPre::new(instance_pre.clone()).map(Compiled::Pre),
            HookKind::Post => PostHookPre::new(instance_pre.clone()).map(Compiled::Post),
        };
        linked.map_err(|e| {
            let other = match kind {
                HookKind::Pre => HookKind::Post,
                HookKind::Post => HookKind::Pre,
            };
            let is_other = match other {
                HookKind::Pre => PreHookPre::new(instance_pre.clone()).is_ok(),
                HookKind::Post => PostHookPre::new(instance_pre.clone()).is_ok(),
            };
            if is_other {
                wrong_world(format!(
                    "it is a {other}, uploaded as {} (export the `{kind}` world instead)",
                    kind.part_name()
                ))
            } else {
                wrong_world(format!(
                    "it does not export the `{kind}` world of {}: {e:#}",
                    super::WIT_PACKAGE
                ))
            }
        })
    }
}

/// How many hooks may compile at once: one per core. Each compile also
/// spreads its functions over the shared compilation thread pool, so more
/// slots would only make every compile slower.
pub(super) fn compile_slots() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn check_upload(kind: HookKind, bytes: &[u8], max: usize) -> Result<(), HookLoadError> {
    if bytes.len() > max {
        return Err(HookLoadError::TooLarge {
            kind,
            size: bytes.len(),
            max,
        });
    }
    if Engine::detect_precompiled(bytes).is_some() {
        return Err(HookLoadError::Precompiled { kind });
    }
    if !bytes.starts_with(WASM_MAGIC) {
        return Err(HookLoadError::NotWasm { kind });
    }
    if bytes.get(4..8) == Some(&CORE_MODULE_VERSION[..]) {
        return Err(HookLoadError::CoreModule { kind });
    }
    Ok(())
}

/// Artefacts are only valid for the engine configuration that made them, so
/// the file name carries the engine's compatibility hash.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::hooks::RuntimeOptions;

    #[tokio::test]
    async fn a_compile_waits_only_while_every_compile_slot_is_busy() {
        let runtime = HookRuntime::new(RuntimeOptions::default()).unwrap();
        let component = Bytes::from(wat::parse_str("(component)").unwrap());
        let slots = compile_slots();
        assert_eq!(runtime.compiles.available_permits(), slots);

        // Slow compiles of other backends hold all slots but one.
        let others = runtime
            .compiles
            .clone()
            .acquire_many_owned(u32::try_from(slots - 1).unwrap())
            .await
            .unwrap();
        let compiled = tokio::time::timeout(
            Duration::from_secs(60),
            runtime.compile_cached(HookKind::Post, component.clone(), "first"),
        )
        .await;
        assert!(matches!(compiled, Ok(Ok((_, false)))), "it ran at once");
        assert_eq!(
            runtime.compiles.available_permits(),
            1,
            "its slot is free again once it finished"
        );

        let last = runtime.compiles.clone().acquire_owned().await.unwrap();
        let waiting = runtime.compile_cached(HookKind::Post, component, "second");
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "no slot, no compile"
        );
        drop(last);
        let compiled = tokio::time::timeout(Duration::from_secs(60), waiting).await;
        assert!(matches!(compiled, Ok(Ok(_))), "it ran once a slot freed");
        drop(others);
    }
}
