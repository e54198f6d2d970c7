//! `backends list|show|delete`: a running server's backends through its
//! admin API (`GET /backends`, `GET|DELETE /backends/{name}`).

use super::say;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use cls::api::{
    ActivityDescription, BackendDescription, BackendList, HookDescription, LimitsDescription,
    TensorDescription,
};
use cls::backend::BackendName;
use reqwest::Method;

use super::admin_api::{AdminClient, DEFAULT_TIMEOUT, ServerArgs, join, typed};
use super::print_json;

const LIST_EXAMPLES: &str = "\
Examples:
  configurable-ls-backend backends list --server http://127.0.0.1:9090
  ADMIN_TOKEN=… configurable-ls-backend backends list --server https://cls.example.com --json";

const SHOW_EXAMPLES: &str = "\
Examples:
  configurable-ls-backend backends show default
  configurable-ls-backend backends show layout --server http://127.0.0.1:9090 --json";

const DELETE_EXAMPLES: &str = "\
Example:
  configurable-ls-backend backends delete layout --server http://127.0.0.1:9090";

/// `backends` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackendsCommand {
    /// List the backends a server serves, with their Label Studio URLs.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Show one backend: model, inputs and outputs, hooks, limits, activity.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(NamedArgs),
    /// Delete a backend (its URL answers 503 afterwards).
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(NamedArgs),
}

/// `backends list` flags.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Flags of the commands that name one backend.
#[derive(Debug, Args)]
pub struct NamedArgs {
    /// The backend's name (`default` is the one at the root URL).
    name: String,
    #[command(flatten)]
    server: ServerArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a `backends` subcommand.
pub async fn run(command: BackendsCommand) -> anyhow::Result<()> {
    match command {
        BackendsCommand::List(args) => list(args).await,
        BackendsCommand::Show(args) => show(args).await,
        BackendsCommand::Delete(args) => delete(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.server, DEFAULT_TIMEOUT)?;
    let (_, body) = client
        .send(client.request(Method::GET, "/backends"), "listing backends")
        .await?;
    if args.json {
        return print_json(&body);
    }
    let BackendList { backends } = typed(&body, "listing backends")?;
    if backends.is_empty() {
        eprintln!(
            "no backends on {}: configure one with `configurable-ls-backend configure`",
            args.server.server
        );
        return Ok(());
    }
    let rows: Vec<[String; 6]> = backends
        .iter()
        .map(|b| {
            [
                b.name.clone(),
                label_studio_url(&args.server, &b.url),
                b.model_version.clone(),
                b.model.source.clone(),
                b.activity.tasks.to_string(),
                b.activity.task_errors.to_string(),
            ]
        })
        .collect();
    print_table(
        [
            "NAME",
            "LABEL STUDIO URL",
            "MODEL VERSION",
            "MODEL",
            "TASKS",
            "ERRORS",
        ],
        &rows,
    );
    Ok(())
}

async fn show(args: NamedArgs) -> anyhow::Result<()> {
    let name = checked_name(&args.name)?;
    let client = AdminClient::new(&args.server, DEFAULT_TIMEOUT)?;
    let what = format!("showing backend '{name}'");
    let (_, body) = client
        .send(
            client.request(Method::GET, &format!("/backends/{name}")),
            &what,
        )
        .await?;
    if args.json {
        return print_json(&body);
    }
    let backend: BackendDescription = typed(&body, &what)?;
    say!("{}", describe(&args.server, &backend));
    Ok(())
}

async fn delete(args: NamedArgs) -> anyhow::Result<()> {
    let name = checked_name(&args.name)?;
    let client = AdminClient::new(&args.server, DEFAULT_TIMEOUT)?;
    client
        .send(
            client.request(Method::DELETE, &format!("/backends/{name}")),
            &format!("deleting backend '{name}'"),
        )
        .await?;
    if args.json {
        return print_json(&serde_json::json!({ "deleted": name.as_str() }));
    }
    say!("deleted backend '{name}'");
    Ok(())
}

/// Refuses names the server would refuse, before any request is made.
fn checked_name(name: &str) -> anyhow::Result<BackendName> {
    BackendName::new(name).context("backend name")
}

/// The URL to paste into Label Studio for a backend at `path` on the server
/// (the `url` of its description).
pub fn label_studio_url(server: &ServerArgs, path: &str) -> String {
    let url = join(&server.server, path);
    if path == "/" {
        url
    } else {
        url.trim_end_matches('/').to_owned()
    }
}

/// A human-readable summary of one backend.
pub fn describe(server: &ServerArgs, b: &BackendDescription) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<17} {value}\n"));
    line("name", b.name.clone());
    line("label studio url", label_studio_url(server, &b.url));
    line("model version", b.model_version.clone());
    line("model", b.model.source.clone());
    line("inputs", tensor_specs(&b.model.inputs));
    line("outputs", tensor_specs(&b.model.outputs));
    line("providers", b.model.providers.join(", "));
    line("pre-hook", hook_summary(b.hooks.pre_hook.as_ref()));
    line("post-hook", hook_summary(Some(&b.hooks.post_hook)));
    line("limits", limits_summary(&b.limits));
    let label_config = if b.config.label_config.is_some() {
        "configured"
    } else {
        "from each request"
    };
    line("label config", label_config.to_owned());
    line("created", b.created.clone());
    line("activity", activity_summary(&b.activity));
    if let Some(error) = &b.activity.last_error {
        line("last error", error.clone());
    }
    out.trim_end().to_owned()
}

fn tensor_specs(specs: &[TensorDescription]) -> String {
    specs
        .iter()
        .map(|spec| {
            let element = spec.element_type.as_deref().unwrap_or("?");
            let shape: Vec<String> = spec.shape.iter().map(i64::to_string).collect();
            format!("{} {element} [{}]", spec.name, shape.join(","))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Size and short hash of an uploaded hook; no hook is the built-in one.
fn hook_summary(hook: Option<&HookDescription>) -> String {
    match hook {
        None => "built-in".to_owned(),
        Some(hook) => format!(
            "{} bytes, sha256 {}",
            hook.size,
            hook.sha256.chars().take(16).collect::<String>()
        ),
    }
}

fn limits_summary(limits: &LimitsDescription) -> String {
    format!(
        "{} ms, {} MiB memory, {} MiB output per hook call",
        limits.hook_timeout_ms, limits.hook_memory_mb, limits.max_output_mb
    )
}

fn activity_summary(activity: &ActivityDescription) -> String {
    format!(
        "{} requests, {} tasks, {} task errors",
        activity.requests, activity.tasks, activity.task_errors
    )
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let format_row = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    say!("{}", format_row(header.to_vec()));
    for row in rows {
        say!("{}", format_row(row.iter().map(String::as_str).collect()));
    }
}
