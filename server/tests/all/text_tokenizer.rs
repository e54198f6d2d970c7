//! The host tokenizer: a real transformer's `tokenizer.json`
//! (all-MiniLM-L6-v2, BERT uncased WordPiece with lowercasing and accent
//! stripping) gives the same ids, masks, word ids, character offsets and
//! windows as the Hugging Face `tokenizers` Python package; model folders
//! are searched for it; and a pre-hook reaches it through
//! `host.open-tokenizer`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cls::hooks::{Datapoint, HookContext, HookKind, HookLimits, HookRuntime, RuntimeOptions};
use cls::model::{EncodeOptions, Encoding, ModelTokenizer, Tokenizer, TokenizerError};
use cls::tensor::TensorData;
use harness::{cache_dir, fixture_hook, model, read, repo_root, require};
use serde_json::{Value, json};

fn minilm_tokenizer() -> Option<PathBuf> {
    model("all-minilm-l6-v2/tokenizer.json")
}

/// A long text: about 1,200 tokens, ten windows of 128.
fn long_text() -> String {
    "Alice Smith flew from Paris to Berlin on Monday with three colleagues from Acme Corp. "
        .repeat(60)
}

/// Texts where byte offsets, UTF-16 offsets and character offsets differ,
/// and where normalisation changes the text.
fn texts() -> Vec<String> {
    [
        "Hello, world!",
        "Café Zürich: naïve façade, Ångström",
        "東京タワーは高い。北京欢迎你",
        "I ❤️ NY 🗽 and 🇫🇷 too",
        "e\u{301}cole and cafe\u{301} (combining accents)",
        "family: 👩‍👩‍👧 ok",
        "line one\r\nline two\n\ttabbed",
        "   leading and trailing   ",
        "",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([long_text()])
    .collect()
}

fn options(
    add_special_tokens: bool,
    max_length: Option<u32>,
    stride: Option<u32>,
    pad: bool,
) -> EncodeOptions {
    EncodeOptions {
        add_special_tokens,
        max_length,
        stride,
        pad_to_max_length: pad,
    }
}

fn option_sets() -> Vec<EncodeOptions> {
    vec![
        options(true, None, None, false),
        options(false, None, None, false),
        options(true, Some(32), None, true),
        options(true, Some(64), Some(16), true),
        options(true, Some(128), Some(32), false),
    ]
}

/// One case of the reference script's request.
fn case(text: &str, pair: Option<&str>, o: EncodeOptions) -> Value {
    json!({
        "text": text,
        "pair": pair,
        "add_special_tokens": o.add_special_tokens,
        "max_length": o.max_length,
        "stride": o.stride,
        "pad_to_max_length": o.pad_to_max_length,
    })
}

/// An encoding as the reference script writes it.
fn as_json(e: &Encoding) -> Value {
    json!({
        "ids": e.ids,
        "type_ids": e.type_ids,
        "attention_mask": e.attention_mask,
        "special_tokens_mask": e.special_tokens_mask,
        "word_ids": e.word_ids,
        "offsets": e.offsets.iter().map(|&(s, t)| [s, t]).collect::<Vec<_>>(),
        "tokens": e.tokens,
    })
}

/// Runs `scripts/py/tokenize_reference.py` on `cases`.
fn python_reference(tokenizer: &std::path::Path, cases: &[Value]) -> Vec<Value> {
    let python = std::env::var_os("CLS_TOOLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("venv-tools/bin/python"));
    let mut child = std::process::Command::new(&python)
        .arg(repo_root().join("scripts/py/tokenize_reference.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let request = json!({"tokenizer": tokenizer, "cases": cases}).to_string();
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), request.as_bytes())
        .expect("write the cases");
    let output = child.wait_with_output().expect("reference output");
    assert!(
        output.status.success(),
        "tokenize_reference.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("reference JSON")
}

#[test]
fn the_host_tokenizer_matches_the_python_package_on_accents_cjk_emoji_and_long_texts() {
    let path = require!("all-MiniLM-L6-v2's tokenizer.json", minilm_tokenizer());
    let tokenizer = Tokenizer::load(&path).expect("load tokenizer.json");
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    let mut add = |text: &str, pair: Option<&str>, o: EncodeOptions| {
        let windows = tokenizer.encode(text, pair, o).expect("encode");
        cases.push(case(text, pair, o));
        ours.push(Value::Array(windows.iter().map(as_json).collect()));
    };
    for text in texts() {
        for o in option_sets() {
            add(&text, None, o);
        }
    }
    let question = "What is the capital of France?";
    let context = "Paris is the capital and most populous city of France. Ça va?";
    add(question, Some(context), options(true, None, None, false));
    add(question, Some(context), options(true, Some(16), None, true));

    let reference = python_reference(&path, &cases);
    assert_eq!(reference.len(), ours.len());
    let mut windows = 0;
    for ((case, ours), theirs) in cases.iter().zip(&ours).zip(&reference) {
        assert_eq!(
            ours, theirs,
            "host and Python tokenizers differ on {case}:\nhost:   {ours}\nPython: {theirs}"
        );
        windows += ours.as_array().map_or(0, Vec::len);
    }
    // The long text was split into windows, not truncated or kept whole.
    assert!(windows > cases.len() + 20, "only {windows} windows in all");
}

#[test]
fn offsets_are_characters_of_the_original_text_through_normalisation() {
    let path = require!("all-MiniLM-L6-v2's tokenizer.json", minilm_tokenizer());
    let tokenizer = Tokenizer::load(&path).expect("load");
    let text = "Café 🗽 Zürich";
    let windows = tokenizer
        .encode(text, None, options(true, None, None, false))
        .expect("encode");
    let [window] = windows.as_slice() else {
        panic!("one window expected, got {}", windows.len())
    };
    assert_eq!(window.tokens, ["[CLS]", "cafe", "[UNK]", "zurich", "[SEP]"]);
    // Characters, not bytes ("é" is 2 bytes, "🗽" 4): Zürich starts at 7.
    assert_eq!(window.offsets, [(0, 0), (0, 4), (5, 6), (7, 13), (0, 0)]);
    let chars: Vec<char> = text.chars().collect();
    let slice = |(s, e): (u32, u32)| chars[s as usize..e as usize].iter().collect::<String>();
    assert_eq!(slice(window.offsets[1]), "Café");
    assert_eq!(slice(window.offsets[3]), "Zürich");
    assert_eq!(window.word_ids, [None, Some(0), Some(1), Some(2), None]);
}

#[test]
fn windows_of_a_long_text_overlap_by_the_stride_and_cover_it() {
    let path = require!("all-MiniLM-L6-v2's tokenizer.json", minilm_tokenizer());
    let tokenizer = Tokenizer::load(&path).expect("load");
    let text = long_text();
    let whole = tokenizer
        .encode(&text, None, options(false, None, None, false))
        .expect("whole");
    let windows = tokenizer
        .encode(&text, None, options(true, Some(64), Some(16), false))
        .expect("windows");
    // 62 text tokens per window, 46 of them new.
    let tokens = whole[0].ids.len();
    assert_eq!(windows.len(), (tokens - 16).div_ceil(46));
    let mut covered = vec![false; tokens];
    let start_of = |offset: (u32, u32)| whole[0].offsets.iter().position(|&o| o == offset);
    for (i, w) in windows.iter().enumerate() {
        assert!(w.ids.len() <= 64);
        assert_eq!(w.tokens.first().map(String::as_str), Some("[CLS]"));
        let text_offsets: Vec<_> = w.offsets[1..w.offsets.len() - 1].to_vec();
        let first = start_of(text_offsets[0]).expect("window starts on a token of the text");
        if i > 0 {
            let previous = &windows[i - 1].offsets;
            // The first 16 text tokens repeat the end of the window before.
            assert_eq!(
                &previous[previous.len() - 17..previous.len() - 1],
                &text_offsets[..16]
            );
        }
        for k in 0..text_offsets.len() {
            covered[first + k] = true;
        }
    }
    assert!(covered.iter().all(|&c| c), "some tokens are in no window");
}

/// A text truncated to one window is tokenized from its start only; a
/// start cut inside a word (no whitespace to cut at) must still give the
/// window the whole text gives.
#[test]
fn a_truncated_window_is_the_same_whether_or_not_the_text_has_whitespace() {
    let path = require!("all-MiniLM-L6-v2's tokenizer.json", minilm_tokenizer());
    let tokenizer = Tokenizer::load(&path).expect("load");
    let texts = [
        "東京タワーは東京都港区芝公園にある総合電波塔です。".repeat(400),
        "北京是中华人民共和国的首都".repeat(600),
        "supercalifragilisticexpialidocious".repeat(300),
        format!("Zoë {}", "naïve-café".repeat(500)),
    ];
    for text in &texts {
        for max in [8, 32, 128] {
            let truncated = tokenizer
                .encode(text, None, options(true, Some(max), None, false))
                .expect("truncated");
            // With a stride every window is cut from the whole text.
            let first_of_whole = tokenizer
                .encode(text, None, options(true, Some(max), Some(2), false))
                .expect("windows");
            assert_eq!(truncated.len(), 1);
            assert_eq!(
                as_json(&truncated[0]),
                as_json(&first_of_whole[0]),
                "{max} tokens of {}…",
                text.chars().take(12).collect::<String>()
            );
            // (A word over 100 characters is one [UNK] to WordPiece.)
            assert!(truncated[0].ids.len() <= max as usize);
        }
    }
}

#[test]
fn options_a_tokenizer_cannot_honour_are_refused_with_the_reason() {
    let path = require!("all-MiniLM-L6-v2's tokenizer.json", minilm_tokenizer());
    let tokenizer = Tokenizer::load(&path).expect("load");
    let refused = |o: EncodeOptions| match tokenizer.encode("some text", None, o) {
        Err(TokenizerError::InvalidArgument(m)) => m,
        other => panic!("{o:?} should be refused, got {other:?}"),
    };
    assert!(
        refused(options(true, Some(16), Some(14), false)).contains("stride 14 must be smaller")
    );
    assert!(refused(options(true, Some(2), None, false)).contains("leaves no room"));
    assert!(refused(options(true, None, None, true)).contains("needs max-length"));
    assert!(refused(options(true, None, Some(4), false)).contains("needs max-length"));
    match tokenizer.decode(&[101, 9_999_999], true) {
        Err(TokenizerError::InvalidArgument(m)) => assert!(m.contains("9999999"), "{m}"),
        other => panic!("an id outside the vocabulary should be refused, got {other:?}"),
    }
}

#[test]
fn a_model_folder_is_searched_for_its_tokenizer() {
    let path = require!("all-MiniLM-L6-v2's tokenizer.json", minilm_tokenizer());
    let found = |layout: &[(&str, &[u8])]| {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, bytes) in layout {
            let file = dir.path().join(name);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(file, bytes).expect("write");
        }
        ModelTokenizer::find(dir.path(), &dir.path().join("model/model.onnx"))
    };
    let json = read(&path);
    let loaded = |t: ModelTokenizer| t.get().map(|t| t.vocab_size());
    // Optimum / torch.onnx: beside the graph.
    assert_eq!(loaded(found(&[("model/tokenizer.json", &json)])), Ok(30522));
    // MLflow's transformers flavor.
    assert_eq!(
        loaded(found(&[("components/tokenizer/tokenizer.json", &json)])),
        Ok(30522)
    );
    match loaded(found(&[("model/model.onnx", b"x")])) {
        Err(TokenizerError::NotFound(m)) => {
            assert!(
                m.contains("no tokenizer.json") && m.contains("log it with the model"),
                "{m}"
            )
        }
        other => panic!("no tokenizer expected, got {other:?}"),
    }
    match loaded(found(&[("tokenizer.json", b"{\"not\": \"a tokenizer\"}")])) {
        Err(TokenizerError::NotFound(m)) => {
            assert!(m.contains("not a tokenizer this server can read"), "{m}")
        }
        other => panic!("a broken tokenizer.json must be reported, got {other:?}"),
    }
}

fn text_task(text: &str, params: Value) -> (Vec<Datapoint>, HookContext) {
    let ctx = HookContext {
        task_json: json!({"id": 3, "data": {"text": text}}).to_string(),
        task_id: Some(3),
        label_config: r#"<View><Text name="text" value="$text"/></View>"#.into(),
        model_version: "v1".into(),
        params: cls::backend::HookParams::new(params).expect("params"),
        ..HookContext::default()
    };
    let datapoints = vec![Datapoint {
        field: "text".into(),
        uri: None,
        content_type: "text/plain".into(),
        data: Bytes::from(text.as_bytes().to_vec()),
    }];
    (datapoints, ctx)
}

#[tokio::test]
async fn a_pre_hook_tokenizes_through_the_host_with_the_backends_tokenizer() {
    let path = require!("all-MiniLM-L6-v2's tokenizer.json", minilm_tokenizer());
    let tokenizer = Arc::new(Tokenizer::load(&path).expect("load"));
    let rt = HookRuntime::new(RuntimeOptions::default()).expect("runtime");
    let hook = rt
        .load(
            HookKind::Pre,
            Bytes::from(read(&fixture_hook("reads-tokenizer"))),
        )
        .await
        .expect("load the fixture");
    let limits = HookLimits {
        timeout: Duration::from_secs(20),
        memory_bytes: 64 << 20,
        max_output_bytes: 16 << 20,
    };
    let text = format!("Zoë met Łukasz in Kraków 🎉. {}", long_text());
    let (datapoints, mut ctx) = text_task(&text, json!({"max_length": 32, "stride": 8}));
    ctx.tokenizer = ModelTokenizer::Loaded(tokenizer.clone());
    let out = hook
        .call_pre(&rt, &datapoints, &ctx, &limits, "text")
        .await
        .expect("the pre-hook tokenizes");

    let expected = tokenizer
        .encode(&text, None, options(true, Some(32), Some(8), true))
        .expect("host encode");
    let input = &out.inputs[0];
    assert_eq!(input.shape(), [expected.len() as u64, 32]);
    let TensorData::Bytes(bytes) = input.data() else {
        panic!("input_ids must be numeric")
    };
    let ids: Vec<i64> = bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let want: Vec<i64> = expected
        .iter()
        .flat_map(|w| w.ids.iter().map(|&i| i64::from(i)))
        .collect();
    assert_eq!(ids, want);
    let carry: Value = serde_json::from_str(out.carry.as_deref().expect("carry")).expect("json");
    assert_eq!(
        carry["windows"][0]["offsets"],
        json!(as_json(&expected[0])["offsets"])
    );
    assert_eq!(carry["vocab_size"], 30522);
    assert_eq!(carry["cls"], 101);
    assert!(
        carry["decoded"]
            .as_str()
            .is_some_and(|d| d.starts_with("zoe met łukasz in krakow")),
        "{}",
        carry["decoded"]
    );

    // Options the tokenizer cannot honour fail the task with the reason.
    let (datapoints, mut ctx) = text_task("short", json!({"max_length": 32, "stride": 40}));
    ctx.tokenizer = ModelTokenizer::Loaded(tokenizer);
    let err = hook
        .call_pre(&rt, &datapoints, &ctx, &limits, "text")
        .await
        .expect_err("a stride longer than the window");
    assert!(
        err.to_string().contains("stride 40 must be smaller"),
        "{err}"
    );

    // A backend whose model has no tokenizer: a configuration error saying
    // what to add.
    let (datapoints, ctx) = text_task("no tokenizer here", json!({}));
    let err = hook
        .call_pre(&rt, &datapoints, &ctx, &limits, "text")
        .await
        .expect_err("no tokenizer");
    let message = err.to_string();
    assert!(
        message.contains("bad config") && message.contains("tokenizer.json"),
        "{message}"
    );
}

/// Through a real server: a backend on an MLflow model folder whose
/// `tokenizer.json` and `config.json` were logged as `extra_files` gives the
/// tokenizer to the pre-hook and the head's `id2label` to the post-hook as
/// class names; a backend on a model without a tokenizer fails each task
/// with what to add.
#[test]
fn a_backend_hands_its_model_folders_tokenizer_to_the_pre_hook() {
    use harness::{Configure, Server, ServerOptions, client};
    let folder = require!(
        "the token_ids model folder (scripts/py/make_models.py)",
        model("mlflow/token_ids")
    );
    let plain = require!("text model", model("text_sentiment.onnx"));
    let server = Server::start(ServerOptions::default());
    let backend = |uri: &std::path::Path| Configure {
        config: json!({
            "model": {"uri": uri.display().to_string()},
            "params": {"max_length": 32},
        }),
        pre_hook: Some(read(&fixture_hook("reads-tokenizer"))),
        post_hook: Some(read(&fixture_hook("reads-params"))),
        ..Configure::default()
    };
    for (name, uri) in [("tok", &folder), ("plain", &plain)] {
        let response = client()
            .put(format!("{}/backends/{name}", server.url))
            .multipart(backend(uri).form())
            .send()
            .expect("configure");
        assert!(
            response.status().is_success(),
            "{name}: {:?}",
            response.text()
        );
    }
    let predict = |name: &str| -> Value {
        let tasks = json!({"tasks": [
            {"id": 1, "data": {"text": "Zoë flew to Kraków"}},
            {"id": 2, "data": {"text": "东京 🗼"}},
        ]});
        client()
            .post(format!("{}/backends/{name}/predict", server.url))
            .json(&tasks)
            .send()
            .expect("predict")
            .json()
            .expect("predict JSON")
    };
    let body = predict("tok");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{body}");
    for result in results {
        assert_eq!(
            result["score"],
            json!(0.5),
            "tokenized and predicted: {body}"
        );
        assert_eq!(
            result["class_names"],
            json!(["O", "B-PER", "I-PER"]),
            "config.json's id2label: {body}"
        );
    }
    let body = predict("plain");
    for result in body["results"].as_array().expect("results") {
        let error = result["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("no tokenizer.json") && error.contains("extra_files"),
            "{body}"
        );
    }
}

/// Without a pre-hook, a model that takes `input_ids` and has a tokenizer
/// gets the task's text tokenized: one window as long as the tokenizer was
/// saved to truncate at, the window's offsets as the carry.
#[test]
fn the_builtin_pre_hook_tokenizes_text_for_a_model_that_takes_token_ids() {
    use harness::{Configure, Server, ServerOptions, client};
    let folder = require!(
        "the token_ids model folder (scripts/py/make_models.py)",
        model("mlflow/token_ids")
    );
    let tokenizer = Tokenizer::load(&folder.join("extra_files/tokenizer.json")).expect("load");
    let server = Server::start(ServerOptions::default());
    let request = Configure {
        config: json!({"model": {"uri": folder.display().to_string()}}),
        post_hook: Some(read(&fixture_hook("echoes-outputs"))),
        ..Configure::default()
    };
    let response = client()
        .put(format!("{}/backends/auto", server.url))
        .multipart(request.form())
        .send()
        .expect("configure");
    assert!(response.status().is_success(), "{:?}", response.text());

    let texts = ["Zoë flew to Kraków 🎉".to_owned(), long_text()];
    let tasks: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i + 1, "data": {"text": t}}))
        .collect();
    let body: Value = client()
        .post(format!("{}/backends/auto/predict", server.url))
        .json(&json!({ "tasks": tasks }))
        .send()
        .expect("predict")
        .json()
        .expect("JSON");
    let max = tokenizer.max_length().unwrap_or(512);
    for (text, result) in texts
        .iter()
        .zip(body["results"].as_array().expect("results"))
    {
        let window = tokenizer
            .encode(text, None, options(true, Some(max), None, false))
            .expect("encode")
            .remove(0);
        let sum: u64 = window.ids.iter().map(|&i| u64::from(i)).sum();
        assert_eq!(
            result["outputs"]["id_sum"],
            json!([sum as f32]),
            "the model got the text's tokens: {result}"
        );
        let carry: Value =
            serde_json::from_str(result["carry"].as_str().expect("a carry")).expect("JSON");
        assert_eq!(carry["windows"][0]["offsets"], as_json(&window)["offsets"]);
        assert_eq!(carry["text"], json!(text));
        assert!(window.ids.len() <= max as usize);
    }
}

#[test]
fn a_tokenizer_whose_vocabulary_does_not_fit_the_model_is_refused_at_configure() {
    use harness::{Configure, Server, ServerOptions, client};
    require!("ONNX Runtime", harness::ort_library());
    let wrong = require!(
        "the small_vocab model folder (scripts/py/make_models.py)",
        model("mlflow/small_vocab")
    );
    let right = require!(
        "the token_ids model folder (scripts/py/make_models.py)",
        model("mlflow/token_ids")
    );
    let server = Server::start(ServerOptions::default());
    let configure = |name: &str, folder: &std::path::Path| {
        let request = Configure {
            config: json!({"model": {"uri": folder.display().to_string()}}),
            post_hook: Some(read(&fixture_hook("echoes-outputs"))),
            ..Configure::default()
        };
        let response = client()
            .put(format!("{}/backends/{name}", server.url))
            .multipart(request.form())
            .send()
            .expect("configure");
        (response.status(), response.text().unwrap_or_default())
    };
    let (status, _) = configure("right", &right);
    assert!(status.is_success(), "{status}");
    let (status, body) = configure("wrong", &wrong);
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.contains("tokenizer.json has 30522 tokens")
            && body.contains("fails on token id 30521")
            && body.contains("does not belong to this model"),
        "{body}"
    );
    let listed: Value = client()
        .get(format!("{}/backends", server.url))
        .send()
        .and_then(|r| r.json())
        .expect("backends");
    let names: Vec<&str> = listed["backends"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, ["right"], "{listed}");
}

/// A copy of the `token_ids` model folder whose `tokenizer.json` sits at
/// `vocab/tok.json`, where no search finds it; and the tokenizer's bytes.
fn model_with_its_tokenizer_elsewhere() -> Option<(tempfile::TempDir, Vec<u8>)> {
    let folder = model("mlflow/token_ids")?;
    let moved = tempfile::tempdir().expect("temp dir");
    for file in ["MLmodel", "model.onnx", "extra_files/config.json"] {
        let to = moved.path().join(file);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("folder");
        std::fs::copy(folder.join(file), &to).expect("copy");
    }
    let tokenizer = read(&folder.join("extra_files/tokenizer.json"));
    std::fs::create_dir_all(moved.path().join("vocab")).expect("vocab folder");
    std::fs::write(moved.path().join("vocab/tok.json"), &tokenizer).expect("tokenizer");
    Some((moved, tokenizer))
}

/// Configures backend `name` on `folder` with `model.tokenizer` (and the
/// MLflow server, when given); the status and the answer.
fn configure_with_tokenizer(
    server: &harness::Server,
    name: &str,
    folder: &std::path::Path,
    tokenizer: &str,
    tracking_uri: Option<&str>,
) -> (reqwest::StatusCode, Value) {
    let mut model = json!({"uri": folder.display().to_string(), "tokenizer": tokenizer});
    if let Some(tracking_uri) = tracking_uri {
        model["tracking_uri"] = json!(tracking_uri);
    }
    let request = harness::Configure {
        config: json!({"model": model, "params": {"max_length": 32}}),
        pre_hook: Some(read(&fixture_hook("reads-tokenizer"))),
        post_hook: Some(read(&fixture_hook("reads-params"))),
        ..harness::Configure::default()
    };
    let response = harness::client()
        .put(format!("{}/backends/{name}", server.url))
        .multipart(request.form())
        .send()
        .expect("configure");
    (response.status(), response.json().unwrap_or(Value::Null))
}

/// Whether backend `name` tokenizes a task through the host (the fixtures
/// score 0.5 when the pre-hook's tokens reach the model).
fn tokenizes(server: &harness::Server, name: &str) -> bool {
    let body: Value = harness::client()
        .post(format!("{}/backends/{name}/predict", server.url))
        .json(&json!({"tasks": [{"id": 1, "data": {"text": "Zoë flew to Kraków"}}]}))
        .send()
        .and_then(|r| r.json())
        .expect("predict");
    body["results"][0]["score"] == json!(0.5)
}

/// `model.tokenizer` names a tokenizer the model folder keeps where no
/// search finds it: a path inside the folder, or an http(s) URL whose last
/// copy serves while its host is down. What cannot work is refused at
/// configure, naming why, and the backend keeps serving its last version.
#[test]
fn a_tokenizer_kept_elsewhere_is_named_by_model_tokenizer() {
    use std::sync::atomic::{AtomicBool, Ordering};
    require!("ONNX Runtime", harness::ort_library());
    let (moved, bytes) = require!(
        "the token_ids model folder (scripts/py/make_models.py)",
        model_with_its_tokenizer_elsewhere()
    );
    let up = Arc::new(AtomicBool::new(true));
    let host = harness::upstream::Upstream::start({
        let up = Arc::clone(&up);
        move |seen| match (seen.path.as_str(), up.load(Ordering::SeqCst)) {
            ("/tokenizer.json", true) => (200, "application/json", bytes.clone()),
            ("/tokenizer.json", false) => (503, "text/plain", b"down".to_vec()),
            _ => (404, "text/plain", b"no such file".to_vec()),
        }
    });
    let server = harness::Server::start(harness::ServerOptions::default());
    let folder = moved.path();
    let url = format!("{}/tokenizer.json", host.url);
    for (name, tokenizer) in [("in-folder", "vocab/tok.json"), ("by-url", url.as_str())] {
        let (status, body) = configure_with_tokenizer(&server, name, folder, tokenizer, None);
        assert!(status.is_success(), "{name}: {status} {body}");
        assert_eq!(
            body["config"]["model"]["tokenizer"],
            json!(tokenizer),
            "{body}"
        );
        assert!(tokenizes(&server, name), "{name}");
    }
    // The host goes down: configuring again uses the copy downloaded before.
    up.store(false, Ordering::SeqCst);
    let (status, body) = configure_with_tokenizer(&server, "by-url", folder, &url, None);
    assert!(status.is_success(), "host down: {status} {body}");
    assert!(tokenizes(&server, "by-url"), "from the copy");
    let gone = format!("{}/gone.json", host.url);
    for (tokenizer, says) in [
        ("../tokenizer.json", "must stay inside the model folder"),
        ("vocab/missing.json", "the folder holds tok.json"),
        (gone.as_str(), "HTTP 404"),
    ] {
        let (status, body) =
            configure_with_tokenizer(&server, "in-folder", folder, tokenizer, None);
        assert!(status.is_client_error(), "{tokenizer}: {status} {body}");
        let error = body.to_string();
        assert!(error.contains(says), "{tokenizer}: {error}");
        assert!(
            tokenizes(&server, "in-folder"),
            "{tokenizer}: the last version serves"
        );
    }
}

/// A tokenizer logged with another MLflow model is named by that model's
/// URI: the server finds `tokenizer.json` in its folder and downloads that
/// one file.
#[test]
fn a_tokenizer_logged_with_another_mlflow_model_is_named_by_its_uri() {
    require!("ONNX Runtime", harness::ort_library());
    let tracking = require!(
        "a running MLflow (CLS_MLFLOW_URI)",
        std::env::var("CLS_MLFLOW_URI")
            .ok()
            .filter(|v| !v.is_empty())
    );
    let (moved, _) = require!(
        "the token_ids model folder (scripts/py/make_models.py)",
        model_with_its_tokenizer_elsewhere()
    );
    let server = harness::Server::start(harness::ServerOptions::default());
    let (status, body) = configure_with_tokenizer(
        &server,
        "mlflow",
        moved.path(),
        "models:/ner_minilm/1",
        Some(&tracking),
    );
    assert!(status.is_success(), "{status} {body}");
    assert!(tokenizes(&server, "mlflow"));
    let (status, body) = configure_with_tokenizer(
        &server,
        "no-tokenizer",
        moved.path(),
        "models:/orientation/1",
        Some(&tracking),
    );
    assert!(status.is_client_error(), "{status} {body}");
    let error = body.to_string();
    assert!(
        error.contains("models:/orientation/1 has no tokenizer.json") && error.contains("MLmodel"),
        "{error}"
    );
}
