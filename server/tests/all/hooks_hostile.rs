//! Hostile hooks, in Rust and in Python (componentize-py components,
//! CPython inside): each is stopped with a clear error, and the same runtime
//! keeps serving a well-behaved hook afterwards.

use std::time::Duration;

use bytes::Bytes;
use cls::hooks::{
    HookCallError, HookContext, HookFailure, HookKind, HookLimits, HookLoadError, HookRuntime,
    RuntimeOptions,
};
use harness::{
    cache_dir, example_hook, fixture_hook, python_example_hook, python_fixture_hook, read,
};
use serde_json::{Value, json};

fn runtime() -> HookRuntime {
    HookRuntime::new(RuntimeOptions::default()).expect("hook runtime")
}

/// A runtime per compiler: by default a new hook runs Winch's code first;
/// without the baseline tier, Cranelift's. Sandbox limits must hold on both.
fn each_tier() -> [(&'static str, HookRuntime); 2] {
    let cranelift = RuntimeOptions {
        compilers: cls::hooks::Compilers::Cranelift,
        ..RuntimeOptions::default()
    };
    [
        ("winch", runtime()),
        (
            "cranelift",
            HookRuntime::new(cranelift).expect("hook runtime"),
        ),
    ]
}

/// Generous limits so a loaded machine never turns a check into a timeout;
/// the deadline test sets its own short one.
fn limits() -> HookLimits {
    HookLimits {
        timeout: Duration::from_secs(20),
        memory_bytes: 64 << 20,
        max_output_bytes: 16 << 20,
    }
}

fn ctx() -> HookContext {
    HookContext {
        task_json: r#"{"id":7,"data":{"text":"hi"}}"#.into(),
        task_id: Some(7),
        label_config: "<View><Text name=\"text\" value=\"$text\"/></View>".into(),
        model_version: "v1".into(),
        params: cls::backend::HookParams::new(json!({"probe": "seen"})).expect("params"),
        ..HookContext::default()
    }
}

async fn load(rt: &HookRuntime, kind: HookKind, path: std::path::PathBuf) -> cls::hooks::Hook {
    rt.load(kind, Bytes::from(read(&path)))
        .await
        .unwrap_or_else(|e| panic!("{} should load: {e}", path.display()))
}

async fn run_post(rt: &HookRuntime, fixture: &str) -> Result<String, HookCallError> {
    run_post_with(rt, fixture, &limits()).await
}

async fn run_post_with(
    rt: &HookRuntime,
    fixture: &str,
    limits: &HookLimits,
) -> Result<String, HookCallError> {
    let hook = load(rt, HookKind::Post, fixture_hook(fixture)).await;
    hook.call_post(rt, Vec::new(), &ctx(), limits, "test").await
}

/// Python components take seconds to compile: these tests share one
/// artefact cache under the project cache (keyed by the component's sha256
/// and the engine's compatibility hash).
fn python_runtime() -> HookRuntime {
    HookRuntime::new(python_runtime_options()).expect("hook runtime")
}

fn python_runtime_options() -> RuntimeOptions {
    RuntimeOptions {
        artefact_dir: Some(cache_dir().join("test-hook-artefacts")),
        // The server's 120 s cap is tested elsewhere; a debug build compiling
        // CPython beside parallel tests on 2 cores must not hit it here.
        compile_timeout: Duration::from_secs(600),
        ..RuntimeOptions::default()
    }
}

/// CPython needs more memory than a Rust hook.
fn python_limits() -> HookLimits {
    HookLimits {
        memory_bytes: 128 << 20,
        ..limits()
    }
}

async fn run_python(
    rt: &HookRuntime,
    fixture: &str,
    limits: &HookLimits,
) -> Result<String, HookCallError> {
    let hook = load(rt, HookKind::Post, python_fixture_hook(fixture)).await;
    hook.call_post(rt, Vec::new(), &ctx(), limits, "test").await
}

/// A memory bomb (Rust or Python) is stopped by the memory limit, and the
/// error says so.
fn assert_out_of_memory(err: &HookCallError) {
    assert!(
        matches!(
            err.failure,
            HookFailure::OutOfMemory(_) | HookFailure::Trap(_)
        ),
        "{err}"
    );
    assert!(err.to_string().contains("memory"), "{err}");
}

/// An endless loop (Rust or Python) is stopped at the deadline of task 7.
fn assert_stopped_at_deadline(err: &HookCallError) {
    assert!(matches!(err.failure, HookFailure::Deadline(_)), "{err}");
    assert_eq!(err.kind, HookKind::Post);
    assert_eq!(err.task, Some(7));
    assert!(
        err.to_string()
            .starts_with("post-hook failed on task 7: stopped after"),
        "{err}"
    );
}

/// The host is still healthy: a trivial hook runs fine on the same runtime.
async fn assert_still_healthy(rt: &HookRuntime) {
    let hook = load(rt, HookKind::Post, example_hook("trivial-post")).await;
    let json = hook
        .call_post(rt, Vec::new(), &ctx(), &limits(), "test")
        .await
        .expect("a good hook still runs after a hostile one");
    assert!(json.contains("result"), "{json}");
}

#[tokio::test]
async fn infinite_loop_is_stopped_at_the_deadline() {
    for (compiler, rt) in each_tier() {
        let started = std::time::Instant::now();
        let short = HookLimits {
            timeout: Duration::from_millis(300),
            ..limits()
        };
        let err = run_post_with(&rt, "loop-forever", &short)
            .await
            .unwrap_err();
        assert_stopped_at_deadline(&err);
        // Generous bound: the point is that it stops at all, not how fast.
        assert!(started.elapsed() < Duration::from_secs(30), "{compiler}");
        assert_still_healthy(&rt).await;
    }
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    for (_, rt) in each_tier() {
        let err = run_post(&rt, "memory-bomb").await.unwrap_err();
        assert_out_of_memory(&err);
        assert_still_healthy(&rt).await;
    }
}

#[tokio::test]
async fn deep_recursion_exhausts_the_stack_not_the_host() {
    for (compiler, rt) in each_tier() {
        let err = run_post(&rt, "deep-recursion").await.unwrap_err();
        // Either the wasm call stack or the guest's shadow stack in linear
        // memory runs out first, depending on frame sizes; both must be
        // named.
        let named = match &err.failure {
            HookFailure::StackOverflow => true,
            HookFailure::Trap(m) => m.contains("stack overflowed"),
            _ => false,
        };
        assert!(named, "{compiler}: {err}");
        assert_still_healthy(&rt).await;
    }
}

#[tokio::test]
async fn panic_is_reported_with_its_message() {
    let rt = runtime();
    let err = run_post(&rt, "panics").await.unwrap_err();
    assert!(matches!(err.failure, HookFailure::Trap(_)), "{err}");
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_still_healthy(&rt).await;
}

#[tokio::test]
async fn output_over_the_cap_is_refused() {
    let rt = runtime();
    let err = run_post(&rt, "huge-output").await.unwrap_err();
    assert!(
        matches!(err.failure, HookFailure::OutputTooLarge { .. }),
        "{err}"
    );
    assert_still_healthy(&rt).await;
}

#[tokio::test]
async fn invalid_json_comes_back_as_text_for_the_validator() {
    let rt = runtime();
    let json = run_post(&rt, "invalid-json")
        .await
        .expect("the call itself works");
    assert!(serde_json::from_str::<serde_json::Value>(&json).is_err());
}

#[tokio::test]
async fn a_hook_cannot_read_host_files_or_environment() {
    // SAFETY of the assertion: the variable is set in this process; a hook
    // that could see the host environment would report it.
    let rt = runtime();
    let json = run_post(&rt, "reads-host").await.expect("reads-host runs");
    let report: serde_json::Value = serde_json::from_str(&json).expect("reads-host returns JSON");
    let text = report.to_string();
    assert!(
        !text.contains("root:x:0:0"),
        "hook read /etc/passwd: {text}"
    );
    assert!(
        !text.contains("CARGO"),
        "hook saw the host environment: {text}"
    );
    assert!(
        !text.contains("PATH="),
        "hook saw the host environment: {text}"
    );
}

/// Calls `hook` a few times in a row (so its pool slot is reused) and
/// asserts that each one started from the component as built.
async fn assert_each_call_starts_afresh(
    rt: &HookRuntime,
    hook: &cls::hooks::Hook,
    limits: &HookLimits,
    what: &str,
) {
    for call in 1..=4 {
        let json = hook
            .call_post(rt, Vec::new(), &ctx(), limits, "test")
            .await
            .unwrap_or_else(|e| panic!("{what}: call {call} failed: {e}"));
        let report: Value = serde_json::from_str(&json).expect("reads-host returns JSON");
        assert_eq!(
            report["probe"]["leftovers"],
            json!({"earlier_calls": 0, "image_pages_as_built": true}),
            "{what}: call {call} saw what an earlier call left in memory"
        );
    }
}

#[tokio::test]
async fn a_call_never_sees_what_an_earlier_call_left_in_memory() {
    // A used pool slot is reset in place, only its dirtied pages where the
    // kernel can say which (PAGEMAP_SCAN): no task may see another's data.
    for (tier, rt) in each_tier() {
        let hook = load(&rt, HookKind::Post, fixture_hook("reads-host")).await;
        assert_each_call_starts_afresh(&rt, &hook, &limits(), &format!("rust on {tier}")).await;
    }
    let python = HookRuntime::new(RuntimeOptions {
        compilers: cls::hooks::Compilers::Cranelift,
        ..python_runtime_options()
    })
    .expect("hook runtime");
    let hook = load(&python, HookKind::Post, python_fixture_hook("reads-host")).await;
    assert_each_call_starts_afresh(&python, &hook, &python_limits(), "python").await;
}

#[tokio::test]
async fn a_hook_built_against_wit_0_1_0_loads_and_runs_on_a_later_minor_version() {
    let rt = runtime();
    let json = run_post(&rt, "built-on-0-1-0")
        .await
        .expect("a 0.1.0 hook runs");
    assert_eq!(json, r#"{"result":[],"score":0.25}"#);
}

#[tokio::test]
async fn hooks_read_the_params_of_their_context() {
    let rt = runtime();
    let hook = load(&rt, HookKind::Post, fixture_hook("reads-params")).await;
    let call = |params: serde_json::Value| {
        let ctx = HookContext {
            params: cls::backend::HookParams::new(params).expect("params"),
            ..ctx()
        };
        let hook = &hook;
        let rt = &rt;
        async move {
            hook.call_post(rt, Vec::new(), &ctx, &limits(), "test")
                .await
        }
    };
    assert_eq!(
        call(json!({})).await.expect("runs"),
        r#"{"result":[],"score":0.5,"class_names":null}"#
    );
    assert_eq!(
        call(json!({"score": 0.75})).await.expect("runs"),
        r#"{"result":[],"score":0.75,"class_names":null}"#
    );
    let err = call(json!({"score": [1]}))
        .await
        .expect_err("a list is no score")
        .to_string();
    assert!(err.contains("params.score = [1]"), "{err}");
}

#[tokio::test]
async fn logging_is_truncated_and_rate_limited() {
    let rt = runtime();
    let json = run_post(&rt, "logs-a-lot")
        .await
        .expect("logs-a-lot completes");
    assert!(json.contains("result"), "{json}");
}

#[tokio::test]
async fn a_pre_hook_uploaded_as_post_hook_names_the_mix_up() {
    let rt = runtime();
    let err = rt
        .load(
            HookKind::Post,
            Bytes::from(read(&fixture_hook("pre-as-post"))),
        )
        .await
        .err()
        .expect("wrong world is refused");
    assert!(matches!(err, HookLoadError::WrongWorld { .. }), "{err}");
    assert!(err.to_string().contains("is a pre-hook"), "{err}");
}

/// A Cranelift-only runtime (as the CLI's) with its compiled-hook caches
/// in a folder of its own.
fn cranelift_with_caches() -> (tempfile::TempDir, HookRuntime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = HookRuntime::new(RuntimeOptions {
        artefact_dir: Some(dir.path().to_path_buf()),
        compilers: cls::hooks::Compilers::Cranelift,
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    (dir, rt)
}

#[tokio::test]
async fn a_hook_refused_as_the_other_world_is_not_compiled_twice() {
    // `hook build` and `try` learn a built component's world by loading it
    // as a post-hook first: a pre-hook's code must survive that refusal.
    let (_dir, rt) = cranelift_with_caches();
    let bytes = Bytes::from(read(&fixture_hook("pre-as-post")));
    let err = rt
        .load(HookKind::Post, bytes.clone())
        .await
        .err()
        .expect("wrong world is refused");
    assert!(matches!(err, HookLoadError::WrongWorld { .. }), "{err}");
    let hook = rt.load(HookKind::Pre, bytes).await.expect("a pre-hook");
    assert!(
        hook.info().from_cache,
        "the pre-hook was compiled again after its refusal as a post-hook"
    );
}

#[tokio::test]
async fn a_core_module_is_refused_with_build_advice() {
    let rt = runtime();
    let module = wat::parse_str("(module (func (export \"f\")))").expect("wat");
    let err = rt
        .load(HookKind::Post, Bytes::from(module))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, HookLoadError::CoreModule { .. }), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
}

#[tokio::test]
async fn random_bytes_are_not_wasm() {
    let rt = runtime();
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let err = rt
        .load(HookKind::Post, Bytes::from(bytes))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, HookLoadError::NotWasm { .. }), "{err}");
}

#[tokio::test]
async fn a_precompiled_artefact_is_never_deserialized() {
    let rt = runtime();
    let engine = wasmtime::Engine::default();
    let component = read(&example_hook("trivial-post"));
    let artefact = engine.precompile_component(&component).expect("precompile");
    let err = rt
        .load(HookKind::Post, Bytes::from(artefact))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, HookLoadError::Precompiled { .. }), "{err}");
}

#[tokio::test]
async fn uploads_over_the_size_cap_are_refused_before_compiling() {
    let rt = HookRuntime::new(RuntimeOptions {
        max_upload_bytes: 1024,
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let err = rt
        .load(
            HookKind::Post,
            Bytes::from(read(&example_hook("trivial-post"))),
        )
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, HookLoadError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn a_second_python_hook_compiles_from_the_functions_the_first_left() {
    // Every componentize-py hook carries the same CPython: Cranelift's
    // cache of compiled functions must hold it after the first hook, so the
    // second (another app, another upload) compiles only what is its own.
    let (dir, rt) = cranelift_with_caches();
    let functions = || {
        std::fs::read_dir(dir.path().join("functions"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    load(&rt, HookKind::Post, python_example_hook("text-post")).await;
    let after_first = functions();
    assert!(after_first > 5_000, "{after_first} functions cached");
    let second = load(
        &rt,
        HookKind::Post,
        python_example_hook("classification-post"),
    )
    .await;
    assert!(
        !second.info().from_cache,
        "a new upload, not a cached artefact"
    );
    let added = functions() - after_first;
    assert!(
        added * 5 < after_first,
        "the second hook compiled {added} functions anew (the first {after_first})"
    );
    // Its code from the cache runs like freshly compiled code would.
    let ran = second
        .call_post(&rt, Vec::new(), &ctx(), &limits(), "test")
        .await;
    if let Err(e) = ran {
        assert!(matches!(e.failure, HookFailure::Returned(_)), "{e}");
    }
}

#[tokio::test]
async fn compiled_hooks_are_cached_on_disk_and_reused() {
    // A Rust hook and a Python one (CPython inside: seconds to compile).
    for path in [
        example_hook("trivial-post"),
        python_example_hook("text-post"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = RuntimeOptions {
            artefact_dir: Some(dir.path().to_path_buf()),
            ..RuntimeOptions::default()
        };
        let bytes = Bytes::from(read(&path));
        let first = HookRuntime::new(options.clone()).expect("runtime");
        let compiled = first
            .load(HookKind::Post, bytes.clone())
            .await
            .expect("load");
        assert!(!compiled.info().from_cache);
        // It serves Winch's code first; Cranelift's takes over and is what
        // the cache keeps.
        assert!(
            !compiled.is_optimized(),
            "a new hook starts on its baseline build"
        );
        let baseline = compiled
            .call_post(&first, Vec::new(), &ctx(), &limits(), "test")
            .await
            .map_err(|e| e.to_string());
        wait_until_optimized(&compiled).await;
        let optimized = compiled
            .call_post(&first, Vec::new(), &ctx(), &limits(), "test")
            .await
            .map_err(|e| e.to_string());
        assert_eq!(baseline, optimized, "both builds answer alike");
        let second = HookRuntime::new(options).expect("runtime");
        let hook = second.load(HookKind::Post, bytes).await.expect("load");
        assert!(
            hook.info().from_cache && hook.is_optimized(),
            "second load of {} should reuse the optimised artefact",
            path.display()
        );
        eprintln!(
            "{} ({} bytes): compiled in {:.0} ms, loaded from the artefact cache in {:.0} ms",
            path.display(),
            compiled.info().size,
            compiled.info().load_ms,
            hook.info().load_ms
        );
        // It runs: text-post answers this empty context with its own
        // error, which is fine; a trap would not be.
        let ran = hook
            .call_post(&second, Vec::new(), &ctx(), &limits(), "test")
            .await;
        if let Err(e) = ran {
            assert!(matches!(e.failure, HookFailure::Returned(_)), "{e}");
        }
    }
}

/// Polls (with a deadline) until Cranelift's build serves `hook`.
async fn wait_until_optimized(hook: &cls::hooks::Hook) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !hook.is_optimized() {
        assert!(
            std::time::Instant::now() < deadline,
            "the optimised build never took over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn python_infinite_loop_is_stopped_at_the_deadline() {
    let rt = python_runtime();
    let short = HookLimits {
        timeout: Duration::from_secs(1),
        ..python_limits()
    };
    let err = run_python(&rt, "loop-forever", &short).await.unwrap_err();
    assert_stopped_at_deadline(&err);
    assert_still_healthy(&rt).await;
}

#[tokio::test]
async fn python_memory_bomb_hits_the_memory_limit() {
    let rt = python_runtime();
    let err = run_python(&rt, "memory-bomb", &python_limits())
        .await
        .unwrap_err();
    assert_out_of_memory(&err);
    assert_still_healthy(&rt).await;
}

#[tokio::test]
async fn python_exception_is_reported_with_its_message_and_traceback() {
    let rt = python_runtime();
    let err = run_python(&rt, "raises", &python_limits())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err.failure, HookFailure::Returned(_)), "{text}");
    assert!(
        text.contains("ValueError: this python hook raises on purpose"),
        "{text}"
    );
    assert!(
        text.contains("app.py"),
        "the traceback names the file: {text}"
    );
    assert_still_healthy(&rt).await;
}

#[tokio::test]
async fn python_invalid_json_comes_back_as_text_for_the_validator() {
    let rt = python_runtime();
    let json = run_python(&rt, "invalid-json", &python_limits())
        .await
        .expect("the call itself works");
    assert!(serde_json::from_str::<Value>(&json).is_err(), "{json}");
}

#[tokio::test]
async fn a_python_hook_cannot_read_host_files_or_environment() {
    let rt = python_runtime();
    // What the host does give a hook includes the model's tokenizer.
    let minilm = harness::require(
        "all-MiniLM-L6-v2's tokenizer.json",
        harness::model("all-minilm-l6-v2/tokenizer.json"),
    );
    let mut ctx = ctx();
    if let Some(path) = &minilm {
        let tokenizer = cls::model::Tokenizer::load(path).expect("tokenizer.json loads");
        ctx.tokenizer = cls::model::ModelTokenizer::Loaded(std::sync::Arc::new(tokenizer));
    }
    let hook = load(&rt, HookKind::Post, python_fixture_hook("reads-host")).await;
    let json = hook
        .call_post(&rt, Vec::new(), &ctx, &python_limits(), "test")
        .await
        .expect("reads-host runs");
    let report: Value = serde_json::from_str(&json).expect("reads-host returns JSON");
    let probe = &report["probe"];
    for attempt in [
        "etc_passwd",
        "cwd_file",
        "cwd_listing",
        "write_tmp",
        "tcp_connect",
        "shipped_at_call",
    ] {
        assert_eq!(
            probe[attempt]["ok"],
            json!(false),
            "{attempt} succeeded: {probe}"
        );
    }
    assert_eq!(
        probe["env"]["count"],
        json!(0),
        "hook saw environment variables: {probe}"
    );
    assert_eq!(probe["args"], json!([]), "{probe}");
    // A data file beside app.py, read at import: built into the component.
    assert_eq!(
        probe["shipped_at_build"],
        json!("shipped with the hook\n"),
        "{probe}"
    );
    assert_eq!(
        probe["param"],
        json!("seen"),
        "the params reach a Python hook: {probe}"
    );
    if minilm.is_some() {
        assert_eq!(
            probe["tokenizer"]["detail"],
            json!("[30522, ['[CLS]', 'zurich', '[SEP]'], [(0, 0), (0, 6), (0, 0)]]"),
            "the tokenizer reaches a Python hook: {probe}"
        );
    }
    assert!(!json.contains("root:x:0:0"), "{json}");
}

#[tokio::test]
async fn a_python_hook_gets_every_native_op_from_the_host() {
    let rt = python_runtime();
    let hook = load(&rt, HookKind::Post, python_fixture_hook("native-ops")).await;
    let json = hook
        .call_post(&rt, Vec::new(), &ctx(), &python_limits(), "test")
        .await
        .expect("native-ops runs");
    let report: Value = serde_json::from_str(&json).expect("native-ops returns JSON");
    let ops = &report["ops"];
    let third = f64::from(1.0f32 / (1.0 + 1.0f32.exp()));
    let sm = hook_sdk::ops::softmax(&[1.0, 2.0]);
    let (a, b) = (f64::from(sm[0]), f64::from(sm[1]));
    assert_eq!(ops["softmax_axis0"], json!([0.5, 0.5, 0.5, 0.5]), "{ops}");
    assert_eq!(ops["softmax_last"], json!([a, b, a, b]), "{ops}");
    assert!((a - third).abs() < 1e-6, "{ops}");
    assert_eq!(ops["sigmoid"], json!([0.5]));
    assert_eq!(ops["top_k"], json!([[[1, 0.75], [2, 0.5]]]));
    // A NaN never wins: row 0 takes 0.5, row 1 (NaN, 0.25) takes 0.25.
    assert_eq!(ops["argmax"], json!([[0, 0.5], [1, 0.25]]));
    // xywh boxes: 1 beats 0 (IoU 0.68), 2 stands alone.
    assert_eq!(
        ops["nms"],
        json!([
            [1, 0, 0.75, 1.0, 1.0, 11.0, 11.0],
            [2, 0, 0.25, 50.0, 50.0, 60.0, 60.0]
        ])
    );
    // a, a, blank, b: "ab", scored by the kept 1.0 and 0.5.
    assert_eq!(ops["ctc"], json!([["ab", 0.75]]));
    assert_eq!(ops["ctc_paddle"], json!(["xy"]));
    assert_eq!(
        ops["regions"],
        json!([[
            6,
            0.75,
            [2, 1, 3, 2],
            [[2.0, 1.0], [5.0, 1.0], [5.0, 3.0], [2.0, 3.0]]
        ]])
    );
    let mut mask = hook_sdk::contours::Mask::new(6, 4);
    for (x, y) in [(2, 1), (3, 1), (4, 1), (2, 2), (3, 2), (4, 2)] {
        mask.set(x, y, true);
    }
    assert_eq!(
        ops["brush_rle_bytes"],
        json!(hook_sdk::rle::encode_mask(&mask).len())
    );
    assert_eq!(
        ops["bad_axis"],
        json!("bad config: softmax: axis 5 is outside a tensor of rank 2")
    );
    assert_eq!(
        ops["bad_format"],
        json!("bad config: nms: box_format 'yolo' is not one of xyxy, xywh, cxcywh")
    );
    assert!(
        ops["bad_scores"]
            .as_str()
            .is_some_and(|e| e.starts_with("bad config: nms: scores must be [3] or [3, classes]")),
        "{ops}"
    );
}
