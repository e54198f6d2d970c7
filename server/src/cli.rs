//! The command line: `serve` (the server) and `healthcheck` (for container
//! health checks). Flags carry their environment variable and help together.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::app::{BasicAuth, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_PREDICTS, ServerConfig};
use crate::secret::Secret;

/// Serve any MLflow ONNX model as a Label Studio ML backend, shaped by
/// sandboxed WebAssembly hooks.
#[derive(Debug, Parser)]
#[command(name = "configurable-ls-backend", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    ///
    /// Examples:
    ///   configurable-ls-backend serve
    ///   configurable-ls-backend serve --host 127.0.0.1 --port 0 --state-dir /tmp/cls
    Serve(ServeArgs),
    /// Exit 0 when the server at URL answers /health with status UP.
    ///
    /// Example:
    ///   configurable-ls-backend healthcheck --url http://127.0.0.1:9090/health
    Healthcheck {
        /// The health URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9090/health")]
        url: String,
    },
}

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
    /// Largest request body in bytes (uploads included).
    #[arg(long, env = "CLS_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Size bound of the model cache in MiB (least recently used unused models are evicted).
    #[arg(long, env = "CLS_MODEL_CACHE_MB", default_value_t = 10_240)]
    pub model_cache_mb: u64,
    /// Size bound of the task-file download cache in MiB.
    #[arg(long, env = "CLS_DOWNLOAD_CACHE_MB", default_value_t = 1_024)]
    pub download_cache_mb: u64,
    /// Force an ONNX Runtime execution provider for every model
    /// (e.g. CPUExecutionProvider, CUDAExecutionProvider), overriding MLmodel's list.
    #[arg(long, env = "CLS_EXECUTION_PROVIDER")]
    pub execution_provider: Option<String>,
    /// Path to libonnxruntime.so (else discovered; see the README).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_dylib_path: Option<PathBuf>,
}

/// Why the flags do not make a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")]
    HalfBasicAuth,
    #[error("no state dir: pass --state-dir or set CLS_STATE_DIR (neither XDG_STATE_HOME nor HOME is set)")]
    NoStateDir,
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
        Ok(ServerConfig {
            basic_auth,
            admin_token: self
                .admin_token
                .clone()
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            max_body_bytes: self.max_body_bytes,
            max_concurrent_predicts: self.max_concurrent_predicts.max(1),
        })
    }
}

/// Sets up `tracing` output; `RUST_LOG` overrides the default level (info).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
