//! The process-wide memory budget for request work.
//!
//! Every large allocation a request causes — its body, the tensors of its
//! tasks, the batches stacked from them — is reserved here *before* it is
//! made. A reservation is a [`Reservation`]: the bytes return to the budget
//! when it drops. Work that does not fit waits (FIFO, so a large request is
//! not starved by small ones) for at most a deadline and is then refused,
//! which the HTTP edge answers with 503 and `Retry-After`; the process never
//! reaches the OOM killer because of request work.
//!
//! Two shares keep one client or one backend from taking everything: a
//! request may hold at most [`MemoryBudget::request_share`] at once, a
//! backend at most [`MemoryBudget::backend_share`]. The budget does not
//! cover what a backend holds while idle (model weights, compiled hooks):
//! that is paid once at configure time.
//!
//! This module only counts bytes; it does not know what they are for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::size::human;

/// The budget is counted in units of this many bytes (a semaphore permit
/// each), so that budgets of many GiB fit the semaphore's `u32` requests.
const UNIT: u64 = 64 << 10;

/// Fraction of the machine's (or the cgroup's) memory given to request work
/// when no budget is configured: the rest is for models, hooks, the
/// allocator's slack and the operating system.
const DEFAULT_FRACTION: f64 = 0.4;

/// Smallest budget accepted: below this not even one image task fits.
pub const MIN_BUDGET_BYTES: u64 = 64 << 20;

/// Share of the budget one request may hold at once (a quarter: four
/// large requests run side by side).
const REQUEST_SHARE_DIVISOR: u64 = 4;

/// Share of the budget one backend may hold at once (half: a busy backend
/// leaves room for the others).
const BACKEND_SHARE_DIVISOR: u64 = 2;

/// How long a request waits for memory before it is refused.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// Why memory could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// More than a share (or the whole budget) in one piece: waiting would
    /// never help.
    #[error(
        "{what} needs {need} but at most {share} may be held at once ({scope} share of the \
         {total} memory budget, CLS_MEMORY_BUDGET_MB)",
        need = human(*.need), share = human(*.share), total = human(*.total)
    )]
    TooLarge {
        what: String,
        need: u64,
        share: u64,
        total: u64,
        scope: &'static str,
    },
    /// The budget stayed full for the whole wait.
    #[error("the server's memory budget is in use by other requests; retry shortly")]
    Busy,
}

impl BudgetError {
    /// Whether retrying later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Busy)
    }
}

/// The process-wide budget. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MemoryBudget {
    total: u64,
    global: Arc<Semaphore>,
    backends: Mutex<HashMap<String, Arc<Semaphore>>>,
    wait: Duration,
}

/// Bytes held from the budget; returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    bytes: u64,
    _global: Option<OwnedSemaphorePermit>,
    _backend: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn held(bytes: u64, (backend, global): (OwnedSemaphorePermit, OwnedSemaphorePermit)) -> Self {
        Self {
            bytes,
            _global: Some(global),
            _backend: Some(backend),
        }
    }

    /// A reservation of nothing (for work too small to count).
    pub fn none() -> Self {
        Self {
            bytes: 0,
            _global: None,
            _backend: None,
        }
    }
}

impl MemoryBudget {
    /// A budget of `total` bytes (at least [`MIN_BUDGET_BYTES`]); requests
    /// wait up to `wait` for room.
    pub fn new(total: u64, wait: Duration) -> Self {
        let total = total.max(MIN_BUDGET_BYTES);
        Self {
            total,
            global: Arc::new(Semaphore::new(units(total) as usize)),
            backends: Mutex::new(HashMap::new()),
            wait,
        }
    }

    /// The default budget: 40 % of the memory this process may use (the
    /// cgroup's limit in a container, else the machine's memory).
    pub fn default_total() -> u64 {
        let available = crate::size::usable_memory().unwrap_or(4 << 30);
        ((available as f64 * DEFAULT_FRACTION) as u64).max(MIN_BUDGET_BYTES)
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> u64 {
        self.global.available_permits() as u64 * UNIT
    }

    /// The most one request may hold at once.
    pub fn request_share(&self) -> u64 {
        self.total / REQUEST_SHARE_DIVISOR
    }

    /// The most one backend's requests may hold at once.
    pub fn backend_share(&self) -> u64 {
        self.total / BACKEND_SHARE_DIVISOR
    }

    /// Reserves `bytes` for `backend`, waiting (FIFO) up to the configured
    /// wait. `what` names the work in the error message.
    pub async fn reserve(
        &self,
        backend: &str,
        bytes: u64,
        what: &str,
    ) -> Result<Reservation, BudgetError> {
        let Some((n, backend_pool)) = self.plan(backend, bytes, what)? else {
            return Ok(Reservation::none());
        };
        let acquire = async {
            // Backend first: a backend at its share waits without holding
            // global room that other backends could use.
            let b = backend_pool.acquire_many_owned(n).await.ok()?;
            let g = self.global.clone().acquire_many_owned(n).await.ok()?;
            Some((b, g))
        };
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Some(permits)) => Ok(Reservation::held(bytes, permits)),
            // The semaphores are never closed; treat that as busy all the same.
            Ok(None) | Err(_) => Err(BudgetError::Busy),
        }
    }

    /// Reserves without waiting: `Busy` when there is no room right now.
    pub fn try_reserve(
        &self,
        backend: &str,
        bytes: u64,
        what: &str,
    ) -> Result<Reservation, BudgetError> {
        let Some((n, backend_pool)) = self.plan(backend, bytes, what)? else {
            return Ok(Reservation::none());
        };
        let b = backend_pool.try_acquire_many_owned(n);
        let g = self.global.clone().try_acquire_many_owned(n);
        match (b, g) {
            (Ok(b), Ok(g)) => Ok(Reservation::held(bytes, (b, g))),
            _ => Err(BudgetError::Busy),
        }
    }

    /// The units to take and the backend's pool, or `None` for nothing to
    /// take; refuses what exceeds a request's share.
    fn plan(
        &self,
        backend: &str,
        bytes: u64,
        what: &str,
    ) -> Result<Option<(u32, Arc<Semaphore>)>, BudgetError> {
        self.check_share(bytes, what)?;
        let n = units(bytes);
        Ok((n > 0).then(|| (n, self.backend_pool(backend))))
    }

    fn check_share(&self, bytes: u64, what: &str) -> Result<(), BudgetError> {
        let share = self.request_share();
        if bytes > share {
            return Err(BudgetError::TooLarge {
                what: what.to_owned(),
                need: bytes,
                share,
                total: self.total,
                scope: "a request's",
            });
        }
        Ok(())
    }

    fn backend_pool(&self, backend: &str) -> Arc<Semaphore> {
        let mut pools = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(backend.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(units(self.backend_share()) as usize)))
            .clone()
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        Self::new(Self::default_total(), DEFAULT_WAIT)
    }
}

/// Bytes rounded up to whole units (a `u32`, saturating: such a request is
/// refused by the share check long before).
fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// Caps glibc's malloc arenas at one per core (at least two).
///
/// glibc gives threads that contend for the allocator arenas of their own,
/// up to eight per core, and an arena keeps what it once held: with tokio's
/// workers, the blocking pool and ONNX Runtime allocating side by side, a
/// two-core server held thirteen arenas and 280 MiB of freed memory after
/// one load test. One arena per core keeps contention low and cut the
/// server's peak RSS from 546 to 378 MiB in the same test. Must run before
/// the process starts threads (glibc fixes the limit when it first needs a
/// second arena). `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` in the environment
/// win, so operators can still choose. A no-op on other C libraries.
pub fn limit_allocator_arenas() {
    let configured = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if configured {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    set_arena_max(cores.max(2));
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: usize) {
    let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
    // SAFETY: `mallopt` only sets a tunable of the allocator; it is called
    // before any other thread exists, with a valid option and value.
    let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    if accepted == 0 {
        tracing::debug!(arenas, "glibc refused M_ARENA_MAX");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(mib: u64) -> MemoryBudget {
        MemoryBudget::new(mib << 20, Duration::from_millis(200))
    }

    #[tokio::test]
    async fn reservations_return_their_bytes_when_dropped() {
        let b = budget(256);
        let before = b.available();
        let r = b.reserve("a", 10 << 20, "test").await.unwrap();
        assert_eq!(b.available(), before - (10 << 20));
        drop(r);
        assert_eq!(b.available(), before);
    }

    #[tokio::test]
    async fn more_than_a_request_share_is_refused_at_once_with_the_numbers() {
        let b = budget(256);
        let err = b
            .reserve("a", 100 << 20, "task 3's tensors")
            .await
            .unwrap_err();
        assert!(!err.is_transient());
        let text = err.to_string();
        assert!(text.contains("task 3's tensors"), "{text}");
        assert!(
            text.contains("100 MiB") && text.contains("64 MiB"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_full_backend_share_makes_that_backend_wait_but_not_others() {
        let b = budget(256);
        // Two requests fill backend a's half.
        let _r1 = b.reserve("a", 64 << 20, "x").await.unwrap();
        let _r2 = b.reserve("a", 64 << 20, "x").await.unwrap();
        assert_eq!(
            b.reserve("a", 1 << 20, "x").await.unwrap_err(),
            BudgetError::Busy
        );
        assert!(b.reserve("b", 64 << 20, "x").await.is_ok());
    }

    #[tokio::test]
    async fn a_waiting_reservation_is_served_when_room_frees() {
        let b = Arc::new(MemoryBudget::new(256 << 20, Duration::from_secs(30)));
        let held: Vec<_> = futures::future::join_all((0..4).map(|i| {
            let b = b.clone();
            async move { b.reserve(&format!("b{i}"), 64 << 20, "x").await.unwrap() }
        }))
        .await;
        assert!(b.try_reserve("c", 1 << 20, "x").is_err());
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.reserve("c", 32 << 20, "x").await.map(|r| r.bytes()) }
        });
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(32 << 20));
    }

    #[test]
    fn the_default_budget_is_positive_and_below_the_machine() {
        let total = MemoryBudget::default_total();
        assert!(total >= MIN_BUDGET_BYTES);
        if let Some(machine) = crate::size::usable_memory() {
            assert!(total <= machine);
        }
    }
}
