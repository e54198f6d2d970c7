//! Where the CPU went during a measurement: the server process, this bench
//! process (load generator and file server), everything else on the
//! machine, and idle — from `/proc`. On a shared machine this tells a
//! server that cannot use the cores apart from cores that were not free.

use std::time::Duration;

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Cumulative CPU times at one instant, in seconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    server: f64,
    bench: f64,
    machine_busy: f64,
    machine_total: f64,
}

/// CPU use over an interval, in percent of one core (the machine has
/// `cores × 100`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub server: f64,
    pub bench: f64,
    pub others: f64,
    pub idle: f64,
    /// Server CPU seconds spent, for per-task costs.
    pub server_seconds: f64,
}

/// Reads the server's (`pid`, if one runs) and this process's CPU times
/// and the machine's.
pub fn sample(server: Option<u32>) -> Sample {
    let (machine_busy, machine_total) = machine();
    Sample {
        server: server.map_or(0.0, |pid| process(&format!("/proc/{pid}/stat"))),
        bench: process("/proc/self/stat"),
        machine_busy,
        machine_total,
    }
}

impl Usage {
    /// What happened between two samples `wall` apart.
    pub fn between(before: &Sample, after: &Sample, wall: Duration) -> Self {
        let wall = wall.as_secs_f64().max(1e-9);
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let total = (after.machine_total - before.machine_total).max(1e-9);
        // /proc/stat counts all cores; scale its shares to percent of one core.
        let share = |busy: f64| busy / total * cores * 100.0;
        let server = (after.server - before.server) / wall * 100.0;
        let bench = (after.bench - before.bench) / wall * 100.0;
        let busy = share(after.machine_busy - before.machine_busy);
        Self {
            server,
            bench,
            others: (busy - server - bench).max(0.0),
            idle: (cores * 100.0 - busy).max(0.0),
            server_seconds: after.server - before.server,
        }
    }
}

/// utime + stime of a process, seconds (fields 14 and 15 of `stat`,
/// counted after the command name, which may hold spaces).
fn process(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// (busy, total) seconds of all cores from `/proc/stat`'s `cpu` line.
fn machine() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest times are inside user).
    let total: f64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    ((total - idle) / TICKS_PER_SECOND, total / TICKS_PER_SECOND)
}
