//! `configure`: one multipart request to a running server, `POST /configure`
//! (the root backend) or `PUT /backends/{name}`, with the parts the admin
//! API reads: `config` (JSON), `pre_hook`, `post_hook`, optionally `model`
//! (a local model file or folder, uploaded) and `sample` (tasks the server
//! predicts before accepting the configuration).
//!
//! Large uploads show a progress bar on a terminal, then a spinner while the
//! server compiles the hooks and loads the model. On success it prints the
//! URL to paste into Label Studio; on failure the server's own message.

use super::say;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::admin_api::{AdminClient, ServerArgs, typed};
use super::backends::{describe, label_studio_url};
use super::model_args::ModelArgs;
use super::{hook, hook_runtime, print_json, progress, tasks};
use cls::api::ConfigureResponse;
use cls::backend::BackendName;
use cls::hooks::HookKind;
use cls::labelconfig::LabelConfig;

pub const EXAMPLES: &str = "\
Examples:
  configurable-ls-backend configure --server http://127.0.0.1:9090 \\
      --model models:/orientation/1 --tracking-uri http://mlflow:5000 \\
      --pre-hook classification_pre.wasm --post-hook classification_post.wasm
  configurable-ls-backend configure --server https://cls.example.com --backend layout \\
      --model ./layout_cdla.onnx --pre-hook my-hook/pre --post-hook my-hook/post \\
      --label-config layout.xml --sample page.png
  ADMIN_TOKEN=… MLFLOW_TRACKING_TOKEN=… configurable-ls-backend configure --backend ocr \\
      --model models:/ocr@champion --post-hook post.wasm --json

A local --model file or folder is uploaded (the server may not share this disk);
--model-by-path sends its path instead. MLflow credentials come from
MLFLOW_TRACKING_URI / _USERNAME / _PASSWORD / _TOKEN as well as the flags.";

/// Upload chunk size (progress granularity).
const CHUNK_BYTES: usize = 256 << 10;
/// Default `--timeout`: uploading, downloading the model and compiling hooks.
const DEFAULT_TIMEOUT_S: u64 = 900;

/// `configure` flags.
#[derive(Debug, clap::Args)]
pub struct ConfigureArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Configure the backend of this name, served at /backends/<NAME>
    /// [default: the root backend, served at /].
    #[arg(long)]
    backend: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
    /// Send a local --model path as it is, for a server that reads the same
    /// disk, instead of uploading the file.
    #[arg(long)]
    model_by_path: bool,
    /// Pre-hook: a .wasm component or a hook crate folder (built first)
    /// [default: the server's built-in pre-hook].
    #[arg(long, value_name = "WASM_OR_CRATE")]
    pre_hook: Option<PathBuf>,
    /// Post-hook: a .wasm component or a hook crate folder (built first).
    #[arg(long, value_name = "WASM_OR_CRATE")]
    post_hook: PathBuf,
    /// A labeling config (XML) to validate predictions against when a
    /// request carries none.
    #[arg(long, value_name = "FILE")]
    label_config: Option<PathBuf>,
    /// A task JSON (or an image or text file, made into a task through the
    /// label config) the server must predict before it accepts the backend.
    #[arg(long, value_name = "FILE")]
    sample: Option<PathBuf>,
    /// The model version to report to Label Studio [default: derived from
    /// the model and hooks].
    #[arg(long)]
    model_version: Option<String>,
    /// A hook parameter, as the hooks read it from the backend's `params`
    /// (repeatable); VALUE is JSON when it parses (`0.5`, `["a","b"]`), else
    /// a string.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::model_args::parse_param)]
    params: Vec<(String, Value)>,
    /// A backend config JSON to start from (limits, fetch, batch_size,
    /// params, …); the flags above override its fields.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Seconds to wait for the server (upload, model download, compile).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_S)]
    timeout: u64,
    /// Print JSON: the server's description of the backend plus `label_studio_url`.
    #[arg(long)]
    json: bool,
}

/// One multipart part, before it is streamed.
struct Upload {
    name: &'static str,
    file_name: String,
    bytes: Bytes,
}

pub async fn run(args: ConfigureArgs) -> anyhow::Result<()> {
    let name = backend_name(&args)?;
    let label_config_xml = read_label_config(args.label_config.as_deref())?;
    let uploads = uploads(&args, label_config_xml.as_deref()).await?;
    let client = AdminClient::new(&args.server, Duration::from_secs(args.timeout.max(1)))?;
    let (status, body) = send_with_progress(&client, name.as_ref(), uploads).await?;
    report(&args, status, body)
}

/// `--backend`, checked the way the server checks it; `None` is the root.
fn backend_name(args: &ConfigureArgs) -> anyhow::Result<Option<BackendName>> {
    args.backend
        .as_deref()
        .map(BackendName::new)
        .transpose()
        .context("--backend")
}

/// `--label-config`'s XML, refused here when it does not parse.
fn read_label_config(path: Option<&Path>) -> anyhow::Result<Option<String>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let xml =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    LabelConfig::parse(&xml)
        .with_context(|| format!("{} is not a usable labeling config", path.display()))?;
    Ok(Some(xml))
}

/// Every part of the request, in the order the server reads them: config,
/// hooks, model, sample.
async fn uploads(args: &ConfigureArgs, label_config: Option<&str>) -> anyhow::Result<Vec<Upload>> {
    let (model_file, uri) = model_part(args)?;
    let config = config_json(args, uri.as_deref(), label_config)?;
    let mut uploads = vec![Upload {
        name: "config",
        file_name: "config.json".into(),
        bytes: Bytes::from(serde_json::to_vec(&config)?),
    }];
    uploads.extend(hook_uploads(args).await?);
    uploads.extend(model_file);
    uploads.extend(sample_upload(args, label_config)?);
    Ok(uploads)
}

/// The model as an upload (a local file or folder), or as the URI the
/// config names instead (a registry URI, or a local path sent as it is
/// with `--model-by-path`).
fn model_part(args: &ConfigureArgs) -> anyhow::Result<(Option<Upload>, Option<String>)> {
    let local = args.model.local_path();
    Ok(match local {
        Some(path) if !args.model_by_path => (Some(model_upload(&path)?), None),
        Some(path) => (None, Some(path.display().to_string())),
        None => (None, Some(args.model.model.clone())),
    })
}

/// The hook parts. Crate folders are built (and checked) here; plain
/// .wasm files go as they are and the server checks them.
async fn hook_uploads(args: &ConfigureArgs) -> anyhow::Result<Vec<Upload>> {
    let hooks = [
        (HookKind::Pre, args.pre_hook.as_deref()),
        (HookKind::Post, Some(args.post_hook.as_path())),
    ];
    let any_crate = hooks.iter().filter_map(|(_, p)| *p).any(Path::is_dir);
    let runtime = if any_crate {
        Some(hook_runtime()?)
    } else {
        None
    };
    let mut uploads = Vec::new();
    for (kind, path) in hooks {
        let Some(path) = path else { continue };
        let bytes = match &runtime {
            Some(runtime) if path.is_dir() => hook::load_arg(path, kind, runtime).await,
            _ => std::fs::read(path).with_context(|| format!("cannot read {}", path.display())),
        }
        .with_context(|| format!("--{}", kind.part_name().replace('_', "-")))?;
        uploads.push(Upload {
            name: kind.part_name(),
            file_name: format!("{}.wasm", kind.part_name()),
            bytes: bytes.into(),
        });
    }
    Ok(uploads)
}

/// `--sample` as a list of tasks (files become tasks through the label
/// config).
fn sample_upload(
    args: &ConfigureArgs,
    label_config: Option<&str>,
) -> anyhow::Result<Option<Upload>> {
    let Some(path) = &args.sample else {
        return Ok(None);
    };
    let config = label_config.map(LabelConfig::parse).transpose()?;
    let sample: Vec<Value> = tasks::from_files(std::slice::from_ref(path), config.as_ref())
        .context("--sample")?
        .into_iter()
        .map(|input| input.task)
        .collect();
    Ok(Some(Upload {
        name: "sample",
        file_name: "sample.json".into(),
        bytes: Bytes::from(serde_json::to_vec(&sample)?),
    }))
}

/// The route for a backend name: `PUT /backends/{name}` or `POST /configure`,
/// and what the request is doing, for messages.
fn route(name: Option<&BackendName>) -> (Method, String, String) {
    match name {
        Some(name) => (
            Method::PUT,
            format!("/backends/{name}"),
            format!("configuring backend '{name}'"),
        ),
        None => (
            Method::POST,
            "/configure".to_owned(),
            "configuring the root backend".to_owned(),
        ),
    }
}

/// Sends the request with an upload bar, then a spinner while the server
/// works, and returns the reply.
async fn send_with_progress(
    client: &AdminClient,
    name: Option<&BackendName>,
    uploads: Vec<Upload>,
) -> anyhow::Result<(StatusCode, Value)> {
    let (method, path, what) = route(name);
    let total: u64 = uploads.iter().map(|u| u.bytes.len() as u64).sum();
    let progress = progress::bytes_bar("uploading", total);
    let form = form(uploads, &progress);
    let sent = client.send(client.request(method, &path).multipart(form), &what);
    let result = tokio::select! {
        result = sent => result,
        () = spin_while_the_server_works(progress.clone()) => unreachable!("the spinner never ends"),
    };
    progress.finish_and_clear();
    result
}

/// Once every byte is sent, turns the upload bar into a spinner; never
/// returns (the request's reply ends it).
async fn spin_while_the_server_works(progress: ProgressBar) {
    while progress.position() < progress.length().unwrap_or(0) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Small uploads had no bar; the wait may still be long (a model download).
    progress.set_draw_target(ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.set_message("server is loading the model and compiling the hooks");
    progress.enable_steady_tick(Duration::from_millis(120));
    std::future::pending::<()>().await;
}

/// Prints the outcome: the server's JSON plus `label_studio_url` with
/// `--json`, else a summary and how to connect Label Studio.
fn report(args: &ConfigureArgs, status: StatusCode, body: Value) -> anyhow::Result<()> {
    let response: ConfigureResponse = typed(&body, "configuring")?;
    let url = label_studio_url(&args.server, &response.backend.url);
    if args.json {
        return print_json(&with_label_studio_url(body, &url));
    }
    let verb = if status == StatusCode::CREATED {
        "created"
    } else {
        "replaced"
    };
    let took = response
        .configure_ms
        .map(|ms| format!(" in {ms:.0} ms"))
        .unwrap_or_default();
    say!("{verb} backend '{}'{took}", response.backend.name);
    say!("{}", describe(&args.server, &response.backend));
    say!();
    print_connect_hint(&args.server.server, &url);
    Ok(())
}

/// The server's reply as it came, plus the URL for Label Studio.
fn with_label_studio_url(mut body: Value, url: &str) -> Value {
    if let Value::Object(map) = &mut body {
        map.insert("label_studio_url".into(), json!(url));
    }
    body
}

/// Where to paste the URL in Label Studio, or the command that does it.
fn print_connect_hint(server: &url::Url, url: &str) {
    say!("Label Studio: Settings → Model → Connect Model → Backend URL:");
    say!("  {url}");
    if is_loopback(server) {
        say!(
            "  (a Label Studio in Docker or on another machine cannot reach this host name: use an address it can)"
        );
    }
    say!(
        "or: configurable-ls-backend connect --backend-url {url} --label-studio <url> --project <id>"
    );
}

/// The `config` part: `--config` as the base, the flags on top. Built as
/// JSON (not `BackendConfig`) so secrets go out as given, not as `***`.
fn config_json(
    args: &ConfigureArgs,
    uri: Option<&str>,
    label_config: Option<&str>,
) -> anyhow::Result<Value> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            match serde_json::from_str::<Value>(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?
            {
                Value::Object(map) => map,
                _ => bail!("{} must hold a JSON object", path.display()),
            }
        }
        None => Map::new(),
    };
    let mut model = match config.remove("model") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if uri.is_none() {
        model.remove("uri");
    }
    model.extend(args.model.config_json(uri));
    config.insert("model".into(), Value::Object(model));
    if let Some(xml) = label_config {
        config.insert("label_config".into(), json!(xml));
    }
    if let Some(version) = super::non_empty(&args.model_version) {
        config.insert("model_version".into(), json!(version));
    }
    if let Some(params) = super::model_args::merge_params(config.remove("params"), &args.params) {
        config.insert("params".into(), params);
    }
    Ok(Value::Object(config))
}

/// A local model as the `model` part: an `.onnx` (or archive) file as it is,
/// a folder (an MLflow model) as a `.tar.gz`.
fn model_upload(path: &Path) -> anyhow::Result<Upload> {
    let file_name = path
        .file_name()
        .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
    if path.is_file() {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(Upload {
            name: "model",
            file_name,
            bytes: bytes.into(),
        });
    }
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    archive.follow_symlinks(true);
    archive
        .append_dir_all(".", path)
        .with_context(|| format!("cannot pack {}", path.display()))?;
    let bytes = archive.into_inner()?.finish()?;
    Ok(Upload {
        name: "model",
        file_name: format!("{file_name}.tar.gz"),
        bytes: bytes.into(),
    })
}

/// The multipart form, each part streamed in chunks that advance `progress`.
fn form(uploads: Vec<Upload>, progress: &ProgressBar) -> Form {
    uploads.into_iter().fold(Form::new(), |form, upload| {
        let length = upload.bytes.len() as u64;
        let bar = progress.clone();
        let chunks: Vec<Bytes> = (0..upload.bytes.len())
            .step_by(CHUNK_BYTES)
            .map(|start| {
                upload
                    .bytes
                    .slice(start..(start + CHUNK_BYTES).min(upload.bytes.len()))
            })
            .collect();
        let stream = futures::stream::iter(chunks).map(move |chunk| {
            bar.inc(chunk.len() as u64);
            Ok::<_, std::io::Error>(chunk)
        });
        let part = Part::stream_with_length(reqwest::Body::wrap_stream(stream), length)
            .file_name(upload.file_name);
        form.part(upload.name, part)
    })
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use cls::backend::BackendConfig;
    use cls::secret::Secret;

    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ConfigureArgs,
    }

    #[test]
    fn config_json_puts_flags_over_the_base_and_keeps_secrets_as_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base.json");
        std::fs::write(
            &base,
            r#"{"batch_size": 4, "model": {"uri": "old", "sessions": 2}}"#,
        )
        .expect("write");
        let wrapper = Wrapper::try_parse_from([
            "x",
            "--model",
            "models:/m/1",
            "--post-hook",
            "p.wasm",
            "--mlflow-password",
            "hunter2",
            "--config",
            base.to_str().expect("utf-8"),
        ])
        .expect("parses");
        let config =
            config_json(&wrapper.args, Some("models:/m/1"), Some("<View/>")).expect("json");
        let config: BackendConfig = serde_json::from_value(config).expect("a backend config");
        assert_eq!(config.batch_size, 4);
        assert_eq!(config.model.uri.as_deref(), Some("models:/m/1"));
        assert_eq!(config.model.sessions, Some(2));
        let password = config.model.password.as_ref().map(Secret::expose);
        assert_eq!(password, Some("hunter2"));
        assert_eq!(config.label_config.as_deref(), Some("<View/>"));
    }
}
