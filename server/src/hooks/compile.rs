//! Turning uploaded bytes into a callable [`Hook`]: validation, compilation
//! off the request path, the world check, and the use of the
//! compiled-artefact cache (`artefacts`).

use std::time::Instant;

use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::Component;
use wasmtime::{Engine, Strategy};

use super::artefacts::ArtefactCache;
use super::bindings::{post::PostHookPre, pre::PreHookPre};
use super::host::HostState;
use super::{Compilers, HookKind, HookLoadError, HookRuntime, Tier};

/// A compiled hook, ready to be instantiated per call. Cheap to share
/// behind an `Arc`; in-flight calls keep the code they started with.
pub struct Hook {
    pub(super) kind: HookKind,
    /// The code calls run: Winch's at first when tiered, replaced in place
    /// by Cranelift's once it is compiled.
    current: Arc<RwLock<Arc<Compiled>>>,
    info: HookInfo,
}

/// A hook's code as one tier compiled it, linked against that tier's
/// engine.
pub(super) struct Compiled {
    pub(super) linked: Linked,
    optimized: bool,
}

pub(super) enum Linked {
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

    /// The code a call starting now runs.
    pub(super) fn compiled(&self) -> Arc<Compiled> {
        // Only whole `Arc`s are swapped in: a poisoned lock is still sound.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether calls run Cranelift's optimised code: false while a new
    /// hook is served by its baseline (Winch) build.
    pub fn is_optimized(&self) -> bool {
        self.compiled().optimized
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

/// Where a loaded hook's first code came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The artefact cache: Cranelift's, from an earlier compile.
    Cache,
    /// Compiled now by Cranelift.
    Optimized,
    /// Compiled now by Winch; Cranelift's build follows in the background.
    Baseline,
}

impl HookRuntime {
    /// Validates and compiles an uploaded component as a hook of `kind`.
    /// Compilation runs on a blocking thread under the runtime's compile-time
    /// cap, in one of `compile_slots` slots handed out first come, first
    /// served, so one slow upload delays no other backend's configure.
    /// Tiered ([`Compilers`]), the hook serves as soon as Winch has
    /// compiled it, and Cranelift's build replaces that code when ready.
    pub async fn load(&self, kind: HookKind, bytes: Bytes) -> Result<Hook, HookLoadError> {
        check_upload(kind, &bytes, self.options.max_upload_bytes)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let started = Instant::now();
        let (compiled, origin) = self.compile_first(kind, &bytes, &sha256).await?;
        let current = Arc::new(RwLock::new(Arc::new(compiled)));
        if origin == Origin::Baseline && self.options.compilers == Compilers::Tiered {
            self.optimize_in_background(kind, bytes.clone(), sha256.clone(), &current);
        }
        let info = HookInfo {
            kind,
            sha256,
            source_sha256: super::stamp::read(&bytes),
            size: bytes.len(),
            load_ms: started.elapsed().as_secs_f64() * 1e3,
            from_cache: origin == Origin::Cache,
        };
        tracing::info!(
            hook = %kind, sha256 = %info.sha256, size = info.size, from_cache = info.from_cache,
            "hook loaded in {:.1} ms", info.load_ms
        );
        Ok(Hook {
            kind,
            current,
            info,
        })
    }

    /// The first code the hook runs: Cranelift's from the artefact cache,
    /// else Winch's (unless Cranelift only) or Cranelift's, compiled now. A
    /// component Winch cannot compile (a proposal it lacks) goes to
    /// Cranelift, which also words the error of an invalid one.
    async fn compile_first(
        &self,
        kind: HookKind,
        bytes: &Bytes,
        sha256: &str,
    ) -> Result<(Compiled, Origin), HookLoadError> {
        if let Some(compiled) = self.cached(kind, sha256)? {
            return Ok((compiled, Origin::Cache));
        }
        let permit = self.compile_slot(kind).await?;
        // The same upload may have been compiled while we waited for the
        // slot (two backends configured with one hook): compile it once.
        if let Some(compiled) = self.cached(kind, sha256)? {
            return Ok((compiled, Origin::Cache));
        }
        let permit = match &self.baseline {
            None => permit,
            Some(baseline) => {
                match compile(
                    baseline,
                    kind,
                    bytes.clone(),
                    permit,
                    self.options.compile_timeout,
                    Priority::Serving,
                )
                .await
                {
                    Ok(component) => {
                        return Ok((baseline.link(kind, &component)?, Origin::Baseline));
                    }
                    Err(HookLoadError::Invalid { message, .. }) => tracing::debug!(
                        hook = %kind, "winch cannot compile this hook ({message}); using cranelift"
                    ),
                    Err(e) => return Err(e),
                }
                self.compile_slot(kind).await?
            }
        };
        self.compile_optimized(kind, bytes, sha256, permit).await
    }

    async fn compile_optimized(
        &self,
        kind: HookKind,
        bytes: &Bytes,
        sha256: &str,
        permit: OwnedSemaphorePermit,
    ) -> Result<(Compiled, Origin), HookLoadError> {
        let tier = &self.optimized;
        let component = compile(
            tier,
            kind,
            bytes.clone(),
            permit,
            self.options.compile_timeout,
            Priority::Serving,
        )
        .await?;
        // Stored before linking: code that compiled is kept even when it is
        // the other world, so `hook build` and `try`, which learn a built
        // component's world by loading it as a post-hook first, compile a
        // pre-hook once, not twice (seconds for a Python one).
        store_artefact(self.artefacts.clone(), &component, sha256).await;
        let compiled = tier.link(kind, &component)?;
        Ok((compiled, Origin::Optimized))
    }

    /// Cranelift's code for this upload from the artefact cache, linked
    /// (never with Winch only: that asks for Winch's code).
    fn cached(&self, kind: HookKind, sha256: &str) -> Result<Option<Compiled>, HookLoadError> {
        let cache = self
            .artefacts
            .as_ref()
            .filter(|_| self.options.compilers != Compilers::Winch);
        cache
            .and_then(|c| c.load(&self.optimized.engine, sha256))
            .map(|component| self.optimized.link(kind, &component))
            .transpose()
    }

    async fn compile_slot(&self, kind: HookKind) -> Result<OwnedSemaphorePermit, HookLoadError> {
        self.compiles
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| HookLoadError::Internal {
                kind,
                message: e.to_string(),
            })
    }

    /// Compiles the optimised build in a compile slot of its own and swaps
    /// it into the hook for the calls that start after. Skipped if the hook
    /// was replaced (dropped) before its turn; a failure leaves the hook on
    /// its baseline code, which works, and is logged.
    fn optimize_in_background(
        &self,
        kind: HookKind,
        bytes: Bytes,
        sha256: String,
        current: &Arc<RwLock<Arc<Compiled>>>,
    ) {
        let target = Arc::downgrade(current);
        let tier = self.optimized.clone();
        let slots = self.compiles.clone();
        let artefacts = self.artefacts.clone();
        let limit = self.options.compile_timeout;
        tokio::spawn(async move {
            let Ok(permit) = slots.acquire_owned().await else {
                return;
            };
            if target.strong_count() == 0 {
                return;
            }
            let started = Instant::now();
            let compiled =
                match compile(&tier, kind, bytes, permit, limit, Priority::Background).await {
                    Ok(component) => {
                        store_artefact(artefacts, &component, &sha256).await;
                        tier.link(kind, &component)
                    }
                    Err(e) => Err(e),
                };
            match (compiled, target.upgrade()) {
                (Ok(compiled), Some(current)) => {
                    *current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(compiled);
                    tracing::info!(
                        hook = %kind, sha256,
                        "optimised build serving after {:.0} ms", started.elapsed().as_secs_f64() * 1e3
                    );
                }
                (Ok(_), None) => {}
                (Err(e), _) => tracing::warn!(
                    hook = %kind, sha256,
                    "the optimised build failed, the hook keeps its baseline build: {e}"
                ),
            }
        });
    }
}

/// Writes Cranelift's build to the artefact cache on the blocking pool:
/// serialising and writing it (36 MiB for a Python hook) is blocking work,
/// kept off the async workers.
async fn store_artefact(
    artefacts: Option<Arc<ArtefactCache>>,
    component: &Component,
    sha256: &str,
) {
    if let Some(cache) = artefacts {
        let (component, sha256) = (component.clone(), sha256.to_owned());
        // A failed store is logged by the cache; a panic only costs the entry.
        let _ = tokio::task::spawn_blocking(move || cache.store(&component, &sha256)).await;
    }
}

/// Compiles with `tier`'s compiler on a blocking thread, logging progress:
/// a componentize-py component (about 19 MiB of CPython) takes seconds, and
/// whoever waits on `/configure` should see why.
async fn compile(
    tier: &Tier,
    kind: HookKind,
    bytes: Bytes,
    permit: OwnedSemaphorePermit,
    limit: std::time::Duration,
    priority: Priority,
) -> Result<Component, HookLoadError> {
    let size = bytes.len();
    let compiler = tier.compiler();
    tracing::info!(hook = %kind, size, compiler, "compiling {kind} ({:.1} MiB)", size as f64 / (1 << 20) as f64);
    let started = Instant::now();
    let engine = tier.engine.clone();
    // A compile cannot be interrupted; past the cap we stop waiting and
    // report, but the compile slot travels with the blocking job and is
    // freed only when the compile really ends, so a flood of slow uploads
    // cannot pile up threads beyond the slots.
    let work = move || {
        let compiled = Component::new(&engine, &bytes);
        drop(permit);
        compiled
    };
    let mut job = match priority {
        Priority::Serving => tokio::task::spawn_blocking(work),
        Priority::Background => in_background_thread(kind, work)?,
    };
    let deadline = tokio::time::Instant::now() + limit;
    let joined = loop {
        let tick = (tokio::time::Instant::now() + COMPILE_PROGRESS_EVERY).min(deadline);
        match tokio::time::timeout_at(tick, &mut job).await {
            Ok(joined) => break joined,
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return Err(HookLoadError::CompileTimeout { kind, limit });
            }
            Err(_) => tracing::info!(
                hook = %kind, size, compiler,
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
        hook = %kind, size, compiler,
        "compiled {kind} in {:.0} ms", started.elapsed().as_secs_f64() * 1e3
    );
    Ok(component)
}

/// Who waits for a compile.
#[derive(Clone, Copy)]
enum Priority {
    /// A configure: on the blocking pool, at the serving threads' priority.
    Serving,
    /// Nobody (the optimised build of a hook already serving): on a thread
    /// of its own at the compute threads' lower priority, so hook calls
    /// and requests are not slowed while it runs.
    Background,
}

/// Runs `work` on a new thread that lowers its own priority first (a
/// blocking-pool thread could not be given back at normal priority).
fn in_background_thread<T: Send + 'static>(
    kind: HookKind,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<tokio::task::JoinHandle<T>, HookLoadError> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("hook-optimize".into())
        .spawn(move || {
            crate::compute::lower_this_threads_priority();
            let _ = done.send(work());
        })
        .map_err(|e| HookLoadError::Internal {
            kind,
            message: format!("cannot start a compile thread: {e}"),
        })?;
    // A panicking compile drops `done`: the join then reports a cancellation.
    Ok(tokio::spawn(async move {
        match result.await {
            Ok(value) => value,
            Err(_) => std::panic::panic_any("the compile thread ended without a result"),
        }
    }))
}

impl Tier {
    /// Resolves the component's imports against this tier's linker and
    /// checks that it exports the world it was uploaded as.
    fn link(&self, kind: HookKind, component: &Component) -> Result<Compiled, HookLoadError> {
        let wrong_world = |message: String| HookLoadError::WrongWorld { kind, message };
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| {
            wrong_world(format!(
                "it imports something this server does not provide: {e:#}"
            ))
        })?;
        let linked = match kind {
            HookKind::Pre => PreHookPre::new(instance_pre.clone()).map(Linked::Pre),
            HookKind::Post => PostHookPre::new(instance_pre.clone()).map(Linked::Post),
        };
        let linked = linked.map_err(|e| {
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
        })?;
        Ok(Compiled {
            linked,
            optimized: self.strategy != Strategy::Winch,
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
        // An empty component compiles, then fails the world check: an
        // answer other than a timeout means the compile ran.
        let ran = |answer: &Result<Result<(Compiled, Origin), HookLoadError>, _>| {
            matches!(answer, Ok(Err(HookLoadError::WrongWorld { .. })))
        };
        let compiled = tokio::time::timeout(
            Duration::from_secs(60),
            runtime.compile_first(HookKind::Post, &component, "first"),
        )
        .await;
        assert!(ran(&compiled), "it ran at once");
        assert_eq!(
            runtime.compiles.available_permits(),
            1,
            "its slot is free again once it finished"
        );

        let last = runtime.compiles.clone().acquire_owned().await.unwrap();
        let waiting = runtime.compile_first(HookKind::Post, &component, "second");
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut waiting)
                .await
                .is_err(),
            "no slot, no compile"
        );
        drop(last);
        let compiled = tokio::time::timeout(Duration::from_secs(60), waiting).await;
        assert!(ran(&compiled), "it ran once a slot freed");
        drop(others);
    }
}
