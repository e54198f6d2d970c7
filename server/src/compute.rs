//! Where the host's CPU-heavy work runs: ONNX Runtime inference, image
//! decoding and resizing (for the built-in pre-hook and the hooks' image
//! API). One thread per core, scheduled by the kernel below the threads that
//! serve HTTP, so a saturated machine still answers `/health` and accepts
//! requests at once while inference takes the rest of the CPU.
//!
//! The threads are the bound: jobs queue and never run more at once than
//! there are threads. A job whose caller gave up before it started (its
//! deadline passed, the request was dropped) is skipped.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// How much lower than the serving threads the pool's threads run (a Linux
/// nice increment). At +10 the kernel gives a runnable serving thread ~9×
/// the CPU share of a compute thread, so a request waits for a core for
/// well under a scheduler tick even when every core is computing; the work
/// itself is not lost, only reordered. A thread may always lower its own
/// priority without privilege (but never raise it back, hence dedicated
/// threads).
pub const NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of lower-priority threads for CPU-heavy work.
pub struct ComputePool {
    jobs: Sender<Job>,
    size: usize,
    /// Jobs queued or running.
    pending: Arc<AtomicUsize>,
}

/// Why [`ComputePool::run`] or [`ComputePool::run_until`] returned no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// The deadline passed while the job waited or ran; its result, if it
    /// ever comes, is dropped.
    #[error("the deadline passed before the work finished")]
    DeadlinePassed,
    /// The job panicked or the pool's threads are gone.
    #[error("native work failed: {0}")]
    Failed(String),
}

/// The process-wide pool, one thread per available core.
pub fn pool() -> &'static ComputePool {
    static POOL: OnceLock<ComputePool> = OnceLock::new();
    POOL.get_or_init(|| {
        ComputePool::new(std::thread::available_parallelism().map_or(1, usize::from))
    })
}

impl ComputePool {
    /// A pool of `size` threads (at least one), started now. A thread that
    /// cannot be started leaves the pool smaller; with none at all, jobs
    /// fail with [`PoolError::Failed`].
    pub fn new(size: usize) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let started = (0..size.max(1))
            .filter(|i| {
                let receiver = Arc::clone(&receiver);
                std::thread::Builder::new()
                    .name(format!("cls-compute-{i}"))
                    .spawn(move || serve_jobs(&receiver))
                    .map_err(|e| tracing::error!("cannot start a compute thread: {e}"))
                    .is_ok()
            })
            .count();
        Self {
            jobs: sender,
            size: started,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many jobs run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Jobs queued or running now: 0 when the machine's cores are free of
    /// the host's heavy work.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Runs `job` on the pool and waits for it.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        let done = Done(Arc::clone(&self.pending));
        let job: Job = Box::new(move || {
            let _done = done;
            // The caller is gone (deadline, dropped request): skip the work.
            if reply.is_closed() {
                return;
            }
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(job))
                .map_err(|panic| PoolError::Failed(panic_message(panic.as_ref())));
            let _ = reply.send(outcome);
        });
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.jobs
            .send(job)
            .map_err(|_| PoolError::Failed("no compute thread is running".into()))?;
        result
            .await
            .map_err(|_| PoolError::Failed("the compute thread stopped".into()))?
    }

    /// Runs `job` on the pool and waits for it until `deadline`. A job that
    /// is still running then cannot be stopped: it keeps its thread (so the
    /// pool stays bounded) and its result is dropped, but the caller gets
    /// [`PoolError::DeadlinePassed`] at once. A job still queued then never
    /// runs.
    pub async fn run_until<T, F>(&self, deadline: Instant, job: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), self.run(job))
            .await
            .map_err(|_| PoolError::DeadlinePassed)?
    }
}

/// Counts a job out of [`ComputePool::pending`] when it is done, skipped or
/// dropped unrun.
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn serve_jobs(receiver: &Mutex<Receiver<Job>>) {
    lower_this_threads_priority();
    loop {
        // The lock is held only while waiting for the next job.
        let next = match receiver.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// On Linux a nice value belongs to a thread, so this lowers the calling
/// thread only. Elsewhere it would lower the whole process: skipped.
#[allow(unsafe_code)]
pub(crate) fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `nice` only changes the calling thread's scheduling
        // priority; -1 is also a valid result, so errno tells failure.
        let failed = unsafe {
            *libc::__errno_location() = 0;
            libc::nice(NICENESS) == -1 && *libc::__errno_location() != 0
        };
        if failed {
            tracing::debug!(
                "cannot lower the compute thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("the work panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_return_their_results() {
        let pool = ComputePool::new(2);
        assert_eq!(pool.size(), 2);
        let sums = futures::future::join_all((0..8u64).map(|i| pool.run(move || i * i))).await;
        let sums: Vec<u64> = sums.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(sums, vec![0, 1, 4, 9, 16, 25, 36, 49]);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_thread_goes_on() {
        let pool = ComputePool::new(1);
        let failed = pool.run(|| -> u8 { panic!("boom") }).await;
        match failed {
            Err(PoolError::Failed(message)) => assert!(message.contains("boom"), "{message}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(pool.run(|| 3).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn the_pool_gives_up_at_the_deadline_and_skips_abandoned_jobs() {
        let pool = ComputePool::new(1);
        let started = Instant::now();
        let slow = pool
            .run_until(started + Duration::from_millis(50), || {
                std::thread::sleep(Duration::from_millis(500))
            })
            .await;
        assert!(matches!(slow, Err(PoolError::DeadlinePassed)));
        assert!(started.elapsed() < Duration::from_millis(400));
        // The abandoned job still holds the one thread: the pool stays
        // bounded, and what queued behind it and was given up never runs.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let queued = pool
            .run_until(Instant::now() + Duration::from_millis(50), move || {
                flag.store(true, Ordering::SeqCst)
            })
            .await;
        assert!(matches!(queued, Err(PoolError::DeadlinePassed)));
        assert_eq!(pool.run(|| 2).await.unwrap(), 2);
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    #[tokio::test]
    async fn compute_threads_run_below_the_callers_priority() {
        fn own_nice() -> i32 {
            // SAFETY: reads the calling thread's nice value.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
        }
        let caller = own_nice();
        let worker = ComputePool::new(1).run(own_nice).await.unwrap();
        assert_eq!(worker, (caller + NICENESS).min(19));
    }
}
