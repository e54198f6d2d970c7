//! `serve` (the server) and `healthcheck` (for container health checks).
//! Flags carry their environment variable and help together.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

use cls::api::{Health, STATUS_UP};
use cls::app::{
    AppState, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_PREDICTS,
    DEFAULT_MAX_PREDICT_BODY_BYTES, ServerConfig, Settings,
};
use cls::auth::{Access, BasicAuth, TrustedProxies};
use cls::runtime::RuntimeSettings;
use cls::secret::Secret;
use serde::Deserialize as _;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `serve` flags.
#[derive(Debug, Clone, Parser)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "CLS_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to bind (0 picks a free one; the chosen address is logged).
    #[arg(long, env = "CLS_PORT", default_value_t = 9090)]
    pub port: u16,
    /// Where backends, compiled hooks and downloaded models are kept
    /// [default: $XDG_STATE_HOME/configurable-ls-backend or ~/.local/state/configurable-ls-backend].
    #[arg(long, env = "CLS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where backends are kept: `dir` (the state dir; one process) or a
    /// PostgreSQL URL (postgres://user:password@host:5432/db) that every
    /// replica shares, so a change made through any of them reaches all.
    #[arg(
        long,
        env = "CLS_STORE",
        default_value = "dir",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub store: String,
    /// This replica's id in the store and in the x-replica-id header
    /// [default: <hostname>-<pid>].
    #[arg(long, env = "CLS_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Seconds between full resyncs with a shared store (changes are also
    /// announced at once; the resync covers announcements that were lost).
    #[arg(long, env = "CLS_RESYNC_SECS", default_value_t = cls::fleet::DEFAULT_RESYNC_EVERY.as_secs())]
    pub resync_secs: u64,
    /// Log format.
    #[arg(long, env = "CLS_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Bearer token required by the admin routes (/configure, /backends).
    /// Without it, admin routes accept only loopback clients.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// HTTP basic auth user for the Label Studio routes (with BASIC_AUTH_PASS).
    #[arg(long, env = "BASIC_AUTH_USER")]
    pub basic_auth_user: Option<String>,
    /// HTTP basic auth password for the Label Studio routes.
    #[arg(long, env = "BASIC_AUTH_PASS", hide_env_values = true)]
    pub basic_auth_pass: Option<String>,
    /// `/predict` requests processed at once; more are answered 503 with Retry-After.
    #[arg(long, env = "CLS_MAX_CONCURRENT_PREDICTS", default_value_t = DEFAULT_MAX_CONCURRENT_PREDICTS)]
    pub max_concurrent_predicts: usize,
    /// Largest admin request body in bytes (hook and model uploads).
    #[arg(long, env = "CLS_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest /predict body in MiB; larger ones are answered 413.
    #[arg(long, env = "CLS_MAX_PREDICT_BODY_MB", default_value_t = (DEFAULT_MAX_PREDICT_BODY_BYTES >> 20) as u64)]
    pub max_predict_body_mb: u64,
    /// Memory in MiB that request work (bodies, images, tensors, batches) may
    /// hold at once; work beyond it waits, then gets 503 with Retry-After
    /// [default: 40 % of the machine's or the container's memory].
    #[arg(long, env = "CLS_MEMORY_BUDGET_MB")]
    pub memory_budget_mb: Option<u64>,
    /// Seconds a request waits for room in the memory budget before 503.
    #[arg(long, env = "CLS_MEMORY_WAIT_SECS", default_value_t = cls::budget::DEFAULT_WAIT.as_secs())]
    pub memory_wait_secs: u64,
    /// Size bound of the model cache in MiB (least recently used unused models are evicted).
    #[arg(long, env = "CLS_MODEL_CACHE_MB", default_value_t = cls::model::DEFAULT_CACHE_MAX_BYTES >> 20)]
    pub model_cache_mb: u64,
    /// Size bound of the task-file download cache in MiB.
    #[arg(long, env = "CLS_DOWNLOAD_CACHE_MB", default_value_t = cls::fetch::DEFAULT_CACHE_MAX_BYTES >> 20)]
    pub download_cache_mb: u64,
    /// Size bound of the compiled-hook cache in MiB (least recently used go
    /// first): compiled hooks, and a quarter for Cranelift's compiled
    /// functions, which later hooks reuse.
    #[arg(long, env = "CLS_COMPILED_CACHE_MB", default_value_t = cls::hooks::DEFAULT_ARTEFACT_CACHE_BYTES >> 20)]
    pub compiled_cache_mb: u64,
    /// How uploaded hooks are compiled: `tiered` (Winch's code serves at
    /// once, Cranelift's takes over when compiled), `cranelift` or `winch`.
    #[arg(long, env = "CLS_HOOK_COMPILERS", default_value_t = cls::hooks::Compilers::Tiered)]
    pub hook_compilers: cls::hooks::Compilers,
    /// Force an ONNX Runtime execution provider for every model
    /// (e.g. CPUExecutionProvider, CUDAExecutionProvider), overriding MLmodel's list.
    #[arg(long, env = "CLS_EXECUTION_PROVIDER")]
    pub execution_provider: Option<String>,
    /// Largest input a model may declare, in MiB per task (dynamic dimensions
    /// count as 1); larger models are refused at configure time. 0: no limit.
    #[arg(long, env = "CLS_MAX_INPUT_MB", default_value_t = cls::model::DEFAULT_MAX_INPUT_BYTES >> 20)]
    pub max_input_mb: u64,
    /// Cap in MiB on ONNX Runtime's memory, shared by every session: an
    /// inference that would allocate past it fails instead of exhausting the
    /// machine [default: half of the machine's or the container's memory; 0: no cap].
    #[arg(long, env = "CLS_ORT_MAX_MEMORY_MB")]
    pub ort_max_memory_mb: Option<u64>,
    /// Path to libonnxruntime.so (else discovered; see the README).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_dylib_path: Option<PathBuf>,
    /// Reverse proxies (IP addresses or CIDR networks, comma-separated) whose
    /// X-Forwarded-For names the client. The admin routes' loopback check then
    /// judges that client; forwarded requests from other peers never count as
    /// loopback.
    #[arg(long, env = "CLS_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Let task downloads reach private, loopback and link-local addresses for
    /// every backend (refused by default; Label Studio's configured URL and
    /// fetch.allowed_hosts never need this). Per backend: fetch.allow_private_networks.
    #[arg(
        long,
        env = "CLS_ALLOW_PRIVATE_NETWORKS",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_private_networks: bool,
    /// Task downloads in progress at once from one origin (scheme, host and
    /// port), like a browser's limit: image servers with a small listen
    /// backlog drop connections beyond it.
    #[arg(
        long,
        env = "CLS_MAX_DOWNLOADS_PER_ORIGIN",
        default_value_t = cls::fetch::DEFAULT_MAX_PER_ORIGIN as u16,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub max_downloads_per_origin: u16,
}

/// Why the flags do not make a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")]
    HalfBasicAuth,
    #[error(
        "no state dir: pass --state-dir or set CLS_STATE_DIR (neither XDG_STATE_HOME nor HOME is set)"
    )]
    NoStateDir,
    #[error(transparent)]
    TrustedProxy(#[from] cls::auth::InvalidProxy),
    #[error(transparent)]
    Store(#[from] cls::store::InvalidStoreLocation),
    #[error(
        "--replica-id (CLS_REPLICA_ID) {0:?}: use 1 to 128 letters, digits, '.', '_', ':' or '-'"
    )]
    ReplicaId(String),
    #[error("--resync-secs (CLS_RESYNC_SECS) must be at least 1")]
    ResyncInterval,
}

impl ServeArgs {
    /// The socket address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The state directory, defaulting per the XDG base-directory spec.
    pub fn state_dir(&self) -> Result<PathBuf, CliError> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .ok_or(CliError::NoStateDir)?;
        Ok(base.join("configurable-ls-backend"))
    }

    /// Server settings from the flags.
    pub fn server_config(&self) -> Result<ServerConfig, CliError> {
        let basic_auth = match (&self.basic_auth_user, &self.basic_auth_pass) {
            (Some(user), Some(pass)) if !user.is_empty() && !pass.is_empty() => Some(BasicAuth {
                user: user.clone(),
                password: Secret::new(pass.clone()),
            }),
            (None, None) => None,
            (Some(u), Some(p)) if u.is_empty() && p.is_empty() => None,
            _ => return Err(CliError::HalfBasicAuth),
        };
        let access = Access {
            basic_auth,
            admin_token: self
                .admin_token
                .clone()
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            trusted_proxies: TrustedProxies::parse(self.trusted_proxies.as_slice())?,
        };
        Ok(ServerConfig {
            access: access.into(),
            max_body_bytes: self.max_body_bytes,
            max_predict_body_bytes: usize::try_from(self.max_predict_body_mb << 20)
                .unwrap_or(usize::MAX),
            max_concurrent_predicts: self.max_concurrent_predicts.max(1),
        })
    }

    /// Where backends are kept.
    pub fn store(&self) -> Result<cls::store::StoreLocation, CliError> {
        Ok(self.store.parse()?)
    }

    /// This replica's id: the flag, or `<hostname>-<pid>`.
    pub fn replica_id(&self) -> Result<String, CliError> {
        let id = match &self.replica_id {
            Some(id) => id.clone(),
            None => {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "replica".to_owned());
                format!("{host}-{}", std::process::id())
            }
        };
        let valid = (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if valid {
            Ok(id)
        } else {
            Err(CliError::ReplicaId(id))
        }
    }

    /// Time between full resyncs.
    pub fn resync_every(&self) -> Result<std::time::Duration, CliError> {
        match self.resync_secs {
            0 => Err(CliError::ResyncInterval),
            secs => Ok(std::time::Duration::from_secs(secs)),
        }
    }

    /// Engine settings from the flags, its caches in `state_dir`.
    pub fn runtime_settings(&self, state_dir: &std::path::Path) -> RuntimeSettings {
        RuntimeSettings {
            model_cache_bytes: self.model_cache_mb << 20,
            download_cache_bytes: self.download_cache_mb << 20,
            execution_provider: self.execution_provider.clone(),
            ort_library: self.ort_dylib_path.clone(),
            ort_memory_cap: self.ort_max_memory_mb.map(|mb| mb << 20),
            model_limits: cls::model::ModelLimits {
                max_input_bytes: self.max_input_mb << 20,
            },
            memory_budget_bytes: self.memory_budget_mb.map(|mb| mb << 20),
            memory_wait: std::time::Duration::from_secs(self.memory_wait_secs),
            allow_private_networks: self.allow_private_networks,
            max_downloads_per_origin: usize::from(self.max_downloads_per_origin),
            hooks: cls::hooks::RuntimeOptions {
                artefact_cache_bytes: self.compiled_cache_mb << 20,
                compilers: self.hook_compilers,
                ..cls::hooks::RuntimeOptions::default()
            },
            ..RuntimeSettings::new(state_dir)
        }
    }
}

/// The start-up warning for a server whose Label Studio routes anyone on the
/// network can call: bound to a non-loopback address without basic auth.
pub fn open_routes_warning(addr: SocketAddr, config: &ServerConfig) -> Option<String> {
    (config.access.basic_auth.is_none() && !addr.ip().to_canonical().is_loopback()).then(|| {
        format!(
            "the Label Studio routes (/predict, /setup, /versions, /metrics) are open to anyone who can reach {addr}; set BASIC_AUTH_USER/BASIC_AUTH_PASS (and the same credentials in Label Studio's model settings), or bind a loopback address with --host"
        )
    })
}

/// Sets up `tracing` output; `RUST_LOG` overrides the default level (info).
/// Colour only when stderr is a terminal and `NO_COLOR` is unset.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    // Colour codes only for a person at a terminal: a log redirected to a
    // file or collected from a container stays plain text. `NO_COLOR` (any
    // non-empty value, no-color.org) turns colour off at a terminal too.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Builds the state, listens, and serves until SIGINT/SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let state_dir = args.state_dir()?;
    let settings = Settings {
        server: args.server_config()?,
        runtime: args.runtime_settings(&state_dir),
        store: args.store()?,
        replica_id: args.replica_id()?,
        resync_every: args.resync_every()?,
        state_dir,
    };
    let state = AppState::start(settings).await?;
    let listener = tokio::net::TcpListener::bind(args.addr())
        .await
        .with_context(|| format!("cannot listen on {}", args.addr()))?;
    let addr = listener.local_addr()?;
    if let Some(warning) = open_routes_warning(addr, &state.config) {
        tracing::warn!("{warning}");
    }
    tracing::info!("listening on http://{addr}");
    cls::router::serve(state, listener, shutdown_signal()).await?;
    tracing::info!("shut down");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then drain.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}

/// Exits 0 when `url` answers with `{"status": "UP"}`, sending `basic_auth`
/// (user, password) when the server guards its Label Studio routes.
pub async fn healthcheck(url: &str, basic_auth: Option<(String, String)>) -> anyhow::Result<()> {
    let mut request = reqwest::Client::new()
        .get(url)
        .timeout(std::time::Duration::from_secs(3));
    if let Some((user, pass)) = basic_auth {
        request = request.basic_auth(user, Some(pass));
    }
    let body: serde_json::Value = request
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .json()
        .await?;
    let up = Health::deserialize(&body).is_ok_and(|health| health.status == STATUS_UP);
    anyhow::ensure!(up, "{url} answered {body}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(extra);
        ServeArgs::try_parse_from(argv).expect("valid flags")
    }

    #[test]
    fn downloads_per_origin_default_to_a_browsers_limit_and_must_be_positive() {
        let settings = args(&[]).runtime_settings(std::path::Path::new("/tmp"));
        assert_eq!(settings.max_downloads_per_origin, 6);
        let two = args(&["--max-downloads-per-origin", "2"]);
        assert_eq!(two.max_downloads_per_origin, 2);
        let zero = ServeArgs::try_parse_from(["serve", "--max-downloads-per-origin", "0"]);
        assert!(zero.is_err_and(|e| e.to_string().contains("--max-downloads-per-origin")));
    }

    #[test]
    fn open_routes_are_warned_about_only_off_loopback_without_basic_auth() {
        let open = ServerConfig::default();
        let any: SocketAddr = "0.0.0.0:9090".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:9090".parse().expect("addr");
        let warning = open_routes_warning(any, &open).expect("warned");
        assert!(
            warning.contains("open to anyone who can reach 0.0.0.0:9090"),
            "{warning}"
        );
        assert!(
            warning.contains("BASIC_AUTH_USER/BASIC_AUTH_PASS"),
            "{warning}"
        );
        assert_eq!(open_routes_warning(local, &open), None);
        let guarded = ServerConfig {
            access: Access {
                basic_auth: Some(BasicAuth {
                    user: "u".into(),
                    password: Secret::new("p"),
                }),
                ..Access::default()
            }
            .into(),
            ..ServerConfig::default()
        };
        assert_eq!(open_routes_warning(any, &guarded), None);
    }

    #[test]
    fn trust_flags_parse_and_bad_proxies_are_refused() {
        let flags = args(&[
            "--trusted-proxies",
            "127.0.0.1,10.0.0.0/8",
            "--allow-private-networks",
        ]);
        let config = flags.server_config().expect("valid");
        assert!(
            flags
                .runtime_settings("/state".as_ref())
                .allow_private_networks
        );
        assert!(
            config
                .access
                .trusted_proxies
                .contains("10.1.2.3".parse().expect("ip"))
        );
        let defaults = args(&[]);
        let config = defaults.server_config().expect("valid");
        assert!(
            !defaults
                .runtime_settings("/state".as_ref())
                .allow_private_networks
        );
        assert!(config.access.trusted_proxies.is_empty());
        let err = args(&["--trusted-proxies", "proxy.local"])
            .server_config()
            .expect_err("not an IP");
        assert!(err.to_string().contains("CLS_TRUSTED_PROXIES"), "{err}");
    }
}
