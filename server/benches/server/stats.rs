//! Throughput and latency arithmetic.

use std::time::Duration;

/// Tasks per second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate(pub f64);

impl Rate {
    /// The sum of each worker's own rate (`(tasks, elapsed)` per worker):
    /// right for independent workers that each stop after their last
    /// whole request.
    pub fn from_threads(per_thread: &[(usize, Duration)]) -> Self {
        Self(
            per_thread
                .iter()
                .filter(|(_, elapsed)| !elapsed.is_zero())
                .map(|(done, elapsed)| *done as f64 / elapsed.as_secs_f64())
                .sum(),
        )
    }

    /// `tasks` over wall time.
    pub fn over(tasks: usize, elapsed: Duration) -> Self {
        Self(tasks as f64 / elapsed.as_secs_f64().max(1e-9))
    }
}

/// Request latencies, sorted.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    /// The `q`-quantile (nearest rank), zero without samples.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn sum(&self) -> Duration {
        self.0.iter().sum()
    }
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}
