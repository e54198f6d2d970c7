//! `configurable-ls-backend`: parse the command line, build the state,
//! serve until SIGINT/SIGTERM. The route table is `app::app`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cls::app::{self, AppState, Settings};
use cls::cli::{Cli, Command, ServeArgs, init_logging};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Healthcheck { url } => healthcheck(&url).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let settings = Settings {
        state_dir: args.state_dir()?,
        server: args.server_config()?,
        model_cache_bytes: args.model_cache_mb << 20,
        download_cache_bytes: args.download_cache_mb << 20,
        execution_provider: args.execution_provider.clone(),
        ort_library: args.ort_dylib_path.clone(),
    };
    let state = AppState::start(settings).await?;
    let listener = tokio::net::TcpListener::bind(args.addr())
        .await
        .with_context(|| format!("cannot listen on {}", args.addr()))?;
    let addr = listener.local_addr()?;
    tracing::info!("listening on http://{addr}");
    app::run(state, listener, shutdown_signal()).await?;
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

async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(url)
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(body["status"] == "UP", "{url} answered {body}");
    Ok(())
}
