//! The thread that advances the engines' epochs, so that a hook's wall-time
//! deadline can fire and a long call yields to tokio between ticks.
//!
//! It ticks every millisecond while at least one hook call is in flight and
//! sleeps otherwise: ticking regardless woke an idle server a thousand times
//! a second, half of the machine's context switches with nothing to do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

/// How often a running call's deadline is checked.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Advances the engines' epoch every [`EPOCH_TICK`] while a call holds a
/// [`Ticking`] guard.
pub(super) struct EpochTicker {
    state: Arc<TickerState>,
    thread: Thread,
}

#[derive(Default)]
struct TickerState {
    stop: AtomicBool,
    /// Hook calls in flight.
    calls: AtomicUsize,
    /// Epochs advanced so far (read by the tests).
    ticks: AtomicU64,
    /// Whether the thread is asleep for want of calls.
    parked: AtomicBool,
}

impl EpochTicker {
    /// Without this thread no deadline would ever fire, so failing to start
    /// it is fatal.
    pub(super) fn start(engines: Vec<Engine>) -> std::io::Result<Self> {
        let state = Arc::new(TickerState::default());
        let shared = state.clone();
        let handle = std::thread::Builder::new()
            .name("hook-epoch".into())
            .spawn(move || shared.run(&engines))?;
        Ok(Self {
            state,
            thread: handle.thread().clone(),
        })
    }

    /// Keeps the epochs advancing until the guard drops: take it before a
    /// hook's store runs any code.
    pub(super) fn busy(&self) -> Ticking<'_> {
        if self.state.calls.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Ticking(self)
    }

    pub(super) fn stop(&self) {
        self.state.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }

    #[cfg(test)]
    fn ticks(&self) -> u64 {
        self.state.ticks.load(Ordering::Acquire)
    }

    #[cfg(test)]
    fn is_parked(&self) -> bool {
        self.state.parked.load(Ordering::Acquire)
    }
}

impl TickerState {
    fn run(&self, engines: &[Engine]) {
        while !self.stop.load(Ordering::Acquire) {
            if self.calls.load(Ordering::Acquire) == 0 {
                // A call that starts between the check and the park has
                // already unparked this thread, so the park returns at once.
                self.parked.store(true, Ordering::Release);
                std::thread::park();
                self.parked.store(false, Ordering::Release);
                continue;
            }
            std::thread::sleep(EPOCH_TICK);
            for engine in engines {
                engine.increment_epoch();
            }
            self.ticks.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// A hook call in flight: the epochs advance while one exists.
pub(super) struct Ticking<'a>(&'a EpochTicker);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.state.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let waited = harness::poll(Duration::from_secs(10), || done().then_some(()));
        assert!(waited.is_some(), "timed out waiting for {what}");
    }

    #[test]
    fn the_ticker_ticks_only_while_a_call_is_in_flight() {
        let ticker = EpochTicker::start(Vec::new()).unwrap();
        wait_for("the idle ticker to sleep", || ticker.is_parked());
        assert_eq!(ticker.ticks(), 0, "ticked with no call in flight");

        let first = ticker.busy();
        let second = ticker.busy();
        wait_for("ticks during a call", || ticker.ticks() >= 3);
        drop(first);
        let before = ticker.ticks();
        wait_for("ticks while one call remains", || {
            ticker.ticks() >= before + 3
        });
        drop(second);

        wait_for("the ticker to sleep again", || ticker.is_parked());
        let asleep_at = ticker.ticks();
        // Twenty ticks' worth of time: a ticker that kept going would move.
        std::thread::sleep(EPOCH_TICK * 20);
        assert_eq!(
            ticker.ticks(),
            asleep_at,
            "ticked after the last call ended"
        );

        let _again = ticker.busy();
        wait_for("ticks after waking", || ticker.ticks() > asleep_at);
        ticker.stop();
    }
}
