//! `backends list|show|delete`: a running server's backends through its
//! admin API (`GET /backends`, `GET|DELETE /backends/{name}`).

use super::say;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::admin_api::{AdminClient, DEFAULT_TIMEOUT, ServerArgs, join};
use super::print_json;
use crate::state::BackendName;

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
    let backends = body["backends"].as_array().cloned().unwrap_or_default();
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
                text(&b["name"]),
                label_studio_url(&args.server, b),
                text(&b["model_version"]),
                text(&b["model"]["source"]),
                text(&b["activity"]["tasks"]),
                text(&b["activity"]["task_errors"]),
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
    let (_, b) = client
        .send(
            client.request(Method::GET, &format!("/backends/{name}")),
            &format!("showing backend '{name}'"),
        )
        .await?;
    if args.json {
        return print_json(&b);
    }
    say!("{}", describe(&args.server, &b));
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

/// The URL to paste into Label Studio for a backend the server describes.
pub fn label_studio_url(server: &ServerArgs, backend: &Value) -> String {
    let path = backend["url"].as_str().unwrap_or("/");
    let url = join(&server.server, path);
    if path == "/" {
        url
    } else {
        url.trim_end_matches('/').to_owned()
    }
}

/// A human-readable summary of one backend (the admin API's JSON).
pub fn describe(server: &ServerArgs, b: &Value) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<17} {value}\n"));
    line("name", text(&b["name"]));
    line("label studio url", label_studio_url(server, b));
    line("model version", text(&b["model_version"]));
    line("model", text(&b["model"]["source"]));
    for (key, side) in [("inputs", "inputs"), ("outputs", "outputs")] {
        let specs = b["model"][side].as_array().cloned().unwrap_or_default();
        let specs: Vec<String> = specs.iter().map(tensor_spec).collect();
        line(key, specs.join(", "));
    }
    line("providers", list_of(&b["model"]["providers"]));
    for kind in ["pre_hook", "post_hook"] {
        let hook = &b["hooks"][kind];
        let value = if hook.is_null() {
            "built-in".to_owned()
        } else {
            format!(
                "{} bytes, sha256 {}",
                text(&hook["size"]),
                text(&hook["sha256"]).chars().take(16).collect::<String>()
            )
        };
        line(&kind.replace('_', "-"), value);
    }
    let limits = &b["limits"];
    line(
        "limits",
        format!(
            "{} ms, {} MiB memory, {} MiB output per hook call",
            text(&limits["hook_timeout_ms"]),
            text(&limits["hook_memory_mb"]),
            text(&limits["max_output_mb"])
        ),
    );
    let has_label_config = b["config"]["label_config"].is_string();
    line(
        "label config",
        if has_label_config {
            "configured"
        } else {
            "from each request"
        }
        .to_owned(),
    );
    line("created", text(&b["created"]));
    let activity = &b["activity"];
    line(
        "activity",
        format!(
            "{} requests, {} tasks, {} task errors",
            text(&activity["requests"]),
            text(&activity["tasks"]),
            text(&activity["task_errors"])
        ),
    );
    if let Some(error) = activity["last_error"].as_str() {
        line("last error", error.to_owned());
    }
    out.trim_end().to_owned()
}

fn tensor_spec(spec: &Value) -> String {
    let element = spec["element_type"].as_str().unwrap_or("?");
    let shape = spec["shape"].to_string();
    format!("{} {element} {shape}", text(&spec["name"]))
}

fn list_of(value: &Value) -> String {
    value
        .as_array()
        .map(|items| items.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| text(value))
}

/// A JSON value as a table cell: strings without quotes, null as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
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
