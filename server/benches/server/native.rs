//! The physical limits, measured in the bench process on the same inputs:
//!
//! - **(a) model alone**: ONNX Runtime on pre-made (already decoded, resized
//!   and batched) input tensors — nothing but inference.
//! - **(b) native pipeline**: what the server does for a request, minus
//!   HTTP, WebAssembly and JSON validation: decode and resize with the
//!   server's own `cls::imageops`, batch like `cls::pipeline`, run `ort`,
//!   post-process with the example hooks' code compiled natively on
//!   `hook-sdk` (softmax/top choice, GFL decode + NMS, contours + polygons),
//!   build the prediction JSON and serialise the response once.
//!
//! Both use sessions built like the server's pool (one per core, one
//! intra-op thread each, no spinning, all graph optimisations).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cls::imageops::{Channels, EncodedImage, Filter, TensorOptions, Transform, Window};
use cls::model::{SessionOptions, read_metadata};
use hook_sdk::contours::Mask;
use hook_sdk::detection::GflHead;
use hook_sdk::polygon::{self, Point};
use hook_sdk::{
    Context, DatapointInfo, HookError, ImageSize, ImageTransform, Nms, Outputs, Prediction, Region,
    RegionIds, TensorSpec, ops,
};
use ort::session::Session;
use ort::value::{DynValue, TensorElementType, ValueType};
use serde_json::{Value, json};

use crate::cases::{Case, IMAGES, image_index};
use crate::stats::{Latencies, Rate};

/// The context record a hook receives (hidden in `hook-sdk`: hook authors
/// never build one, but running a hook's code natively needs it).
type WitContext = hook_sdk::bindings::pre::cls::hooks::types::Context;

/// Time the native pipeline spent per stage, summed over tasks.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeStages {
    /// Decode, resize, tensor.
    pub pre: Duration,
    /// Stacking, `Session::run`, splitting.
    pub inference: Duration,
    /// Post-processing, prediction JSON, response serialisation.
    pub post: Duration,
    pub tasks: usize,
}

impl NativeStages {
    fn add(&mut self, other: &NativeStages) {
        self.pre += other.pre;
        self.inference += other.inference;
        self.post += other.post;
        self.tasks += other.tasks;
    }
}

/// One image after the native pre-processing.
struct Prepared {
    data: Vec<f32>,
    shape: Vec<usize>,
    transform: ImageTransform,
}

/// What the native pipeline knows about a model (shared by its threads).
struct Spec<'a> {
    case: &'a Case,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    metadata: Vec<(String, String)>,
    batch_size: usize,
}

/// A model loaded for the native measurements: one session per core.
pub struct NativeModel<'a> {
    spec: Spec<'a>,
    sessions: Vec<Session>,
}

impl<'a> NativeModel<'a> {
    /// Loads one session per core and warms each on every image.
    pub fn load(
        env: &ort::environment::Environment,
        case: &'a Case,
        path: &Path,
        images: &[Vec<u8>],
    ) -> Self {
        let options = SessionOptions::default();
        let mut sessions: Vec<Session> = (0..options.pool_size)
            .map(|_| session(env, path, &options))
            .collect();
        let first = &sessions[0];
        let inputs: Vec<TensorSpec> = first
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        let outputs = first
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        let metadata = read_metadata(first);
        // As `OnnxModel::batches_on_dim0` and the backend's default batch_size.
        let batches = inputs.iter().all(|i| i.shape.first() == Some(&-1));
        let spec = Spec {
            case,
            inputs,
            outputs,
            metadata,
            batch_size: if batches {
                cls::backend::DEFAULT_BATCH_SIZE
            } else {
                1
            },
        };
        let prepared: Vec<Prepared> = images.iter().map(|b| spec.prepare(b)).collect();
        let (spec_ref, prepared) = (&spec, &prepared);
        std::thread::scope(|scope| {
            for session in sessions.iter_mut() {
                scope.spawn(move || {
                    for p in prepared {
                        spec_ref.infer(session, &[p]);
                    }
                });
            }
        });
        Self { spec, sessions }
    }

    /// Sessions (= threads) available: one per core.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// **(a)**: tasks/s of inference alone on pre-made, pre-batched inputs,
    /// on `threads` sessions at once, for requests of `tasks` tasks.
    pub fn model_alone(
        &mut self,
        images: &[Vec<u8>],
        tasks: usize,
        threads: usize,
        window: Duration,
    ) -> Rate {
        let spec = &self.spec;
        // Every distinct request composition, decoded and batched up front.
        let prepared: Vec<Prepared> = images.iter().map(|b| spec.prepare(b)).collect();
        let compositions = IMAGES.len() / gcd(IMAGES.len(), tasks);
        let requests: Vec<Vec<(DynValue, usize)>> = (0..compositions)
            .map(|r| {
                let members: Vec<&Prepared> = (0..tasks)
                    .map(|j| &prepared[image_index(r, tasks, j)])
                    .collect();
                spec.batches(&members)
                    .into_iter()
                    .map(|batch| {
                        let parts: Vec<&Prepared> = batch.iter().map(|&i| members[i]).collect();
                        (batch_value(&parts), batch.len())
                    })
                    .collect()
            })
            .collect();
        let (requests, name) = (&requests, &spec.inputs[0].name);
        let per_thread: Vec<(usize, Duration)> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .sessions
                .iter_mut()
                .take(threads)
                .enumerate()
                .map(|(t, session)| {
                    scope.spawn(move || {
                        let started = Instant::now();
                        let (mut done, mut r) = (0, t);
                        while started.elapsed() < window {
                            for (value, count) in &requests[r % requests.len()] {
                                let outputs = session
                                    .run(ort::inputs![name.as_str() => value])
                                    .expect("model-alone run");
                                std::hint::black_box(outputs);
                                done += count;
                            }
                            r += threads;
                        }
                        (done, started.elapsed())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("model-alone thread"))
                .collect()
        });
        Rate::from_threads(&per_thread)
    }

    /// **(c)**: the model alone on one image at a time, on one session with
    /// one spinning intra-op thread per core: the best latency this
    /// machine gives one task, and the rate at that latency.
    pub fn model_alone_lone(
        &self,
        env: &ort::environment::Environment,
        path: &Path,
        images: &[Vec<u8>],
        window: Duration,
    ) -> (Rate, Latencies) {
        let spec = &self.spec;
        let options = SessionOptions {
            intra_threads: self.sessions.len(),
            ..SessionOptions::default()
        };
        let mut session = session_spinning(env, path, &options, true);
        let prepared: Vec<Prepared> = images.iter().map(|b| spec.prepare(b)).collect();
        let values: Vec<DynValue> = prepared.iter().map(|p| batch_value(&[p])).collect();
        let name = &spec.inputs[0].name;
        let mut latencies = Vec::new();
        let started = Instant::now();
        for value in values.iter().cycle() {
            if started.elapsed() >= window {
                break;
            }
            let run_started = Instant::now();
            let outputs = session
                .run(ort::inputs![name.as_str() => value])
                .expect("lone run");
            std::hint::black_box(outputs);
            latencies.push(run_started.elapsed());
        }
        let rate = Rate::from_threads(&[(latencies.len(), started.elapsed())]);
        (rate, Latencies::new(latencies))
    }

    /// **(b)**: the native pipeline on `threads` sessions at once, for
    /// requests of `tasks` tasks: tasks/s, per-request latencies and the
    /// time per stage.
    pub fn pipeline(
        &mut self,
        images: &[Vec<u8>],
        urls: &[String],
        tasks: usize,
        threads: usize,
        window: Duration,
    ) -> (Rate, Latencies, NativeStages) {
        let spec = &self.spec;
        let results: Vec<(usize, Duration, Vec<Duration>, NativeStages)> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = self
                    .sessions
                    .iter_mut()
                    .take(threads)
                    .enumerate()
                    .map(|(t, session)| {
                        scope.spawn(move || {
                            let started = Instant::now();
                            let (mut done, mut r) = (0, t);
                            let mut latencies = Vec::new();
                            let mut stages = NativeStages::default();
                            while started.elapsed() < window {
                                let request_started = Instant::now();
                                let body =
                                    spec.request(session, images, urls, r, tasks, &mut stages);
                                std::hint::black_box(body);
                                latencies.push(request_started.elapsed());
                                done += tasks;
                                r += threads;
                            }
                            (done, started.elapsed(), latencies, stages)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("native pipeline thread"))
                    .collect()
            });
        let rate = Rate::from_threads(
            &results
                .iter()
                .map(|(done, elapsed, _, _)| (*done, *elapsed))
                .collect::<Vec<_>>(),
        );
        let mut stages = NativeStages::default();
        let mut latencies = Vec::new();
        for (_, _, l, s) in &results {
            latencies.extend_from_slice(l);
            stages.add(s);
        }
        (rate, Latencies::new(latencies), stages)
    }
}

impl Spec<'_> {
    /// Pre-processing of one image, as the backend's pre-hook does it, with
    /// the host's `cls::imageops` (what the hooks' image helpers call).
    fn prepare(&self, bytes: &[u8]) -> Prepared {
        let input = &self.inputs[0];
        // As the host does: the header first, pixels decoded (reduced for a
        // large JPEG) by the first resize, only the centre crop resampled.
        let image = EncodedImage::open(Bytes::copy_from_slice(bytes), true).expect("native decode");
        let (w, h) = (image.width(), image.height());
        let budget = cls::imageops::MAX_DECODE_BYTES;
        let identity = ImageTransform::identity(w, h);
        let (image, transform, options) = match self.case.name {
            // examples/hooks/classification-pre: short side 256 (Lanczos3), centre crop 224.
            "classification" => {
                let (nw, nh) = hook_sdk::image::short_side_size(w, h, 256);
                let (x, y) = ((nw - 224) / 2, (nh - 224) / 2);
                let centre = Window::new(x, y, 224, 224);
                let image = image
                    .resize_window(nw, nh, centre, Filter::Lanczos3, budget)
                    .expect("native resize");
                let transform = identity.then_resize(nw, nh).then_crop(x, y, 224, 224);
                (image, transform, imagenet_bgr(&input.name))
            }
            // examples/hooks/detection-pre: stretched to the model's 608×800, bilinear.
            "detection" => {
                let (tw, th) = (input.shape[3] as u32, input.shape[2] as u32);
                let image = image
                    .resize(tw, th, Filter::Bilinear, budget)
                    .expect("native resize");
                (
                    image,
                    identity.then_resize(tw, th),
                    imagenet_bgr(&input.name),
                )
            }
            // examples/hooks/polygons-pre: sides multiples of 32, short side ≥ 736.
            _ => {
                let (size, letterbox) = polygons_model_size(w, h);
                let (image, transform) = if letterbox {
                    let (boxed, t) = image
                        .letterbox(size.width, size.height, 0, budget)
                        .expect("native letterbox");
                    (boxed, transform_of(t))
                } else {
                    let resized = image
                        .resize(size.width, size.height, Filter::Bilinear, budget)
                        .expect("native resize");
                    (resized, identity.then_resize(size.width, size.height))
                };
                let options = TensorOptions {
                    mean: vec![0.5; 3],
                    std: vec![0.5; 3],
                    ..imagenet_bgr(&input.name)
                };
                (image, transform, options)
            }
        };
        let tensor = image.to_tensor(&options).expect("native tensor");
        Prepared {
            data: tensor.to_f32_vec().expect("f32 tensor"),
            shape: tensor.shape().iter().map(|&d| d as usize).collect(),
            transform,
        }
    }

    /// Groups a request's tasks as `cls::pipeline::infer` does: identical
    /// input shapes together, at most `batch_size` per run.
    fn batches(&self, prepared: &[&Prepared]) -> Vec<Vec<usize>> {
        let mut groups: BTreeMap<&[usize], Vec<usize>> = BTreeMap::new();
        for (i, p) in prepared.iter().enumerate() {
            groups.entry(p.shape.as_slice()).or_default().push(i);
        }
        groups
            .into_values()
            .flat_map(|members| {
                members
                    .chunks(self.batch_size)
                    .map(<[usize]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Runs one batch and splits every output along dimension 0 into one
    /// `hook-sdk` tensor list per task.
    fn infer(&self, session: &mut Session, parts: &[&Prepared]) -> Vec<Vec<hook_sdk::Tensor>> {
        let value = batch_value(parts);
        let outputs = session
            .run(ort::inputs![self.inputs[0].name.as_str() => &value])
            .expect("native run");
        let mut per_task: Vec<Vec<hook_sdk::Tensor>> = vec![Vec::new(); parts.len()];
        for (name, output) in outputs.iter() {
            let (shape, data) = output.try_extract_tensor::<f32>().expect("f32 output");
            let mut dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            let rows = dims[0].max(1);
            let per_row = data.len() / rows;
            dims[0] = 1;
            for (task, tensors) in per_task.iter_mut().enumerate() {
                let slice = &data[task * per_row..(task + 1) * per_row];
                tensors.push(hook_sdk::Tensor::new(name, &dims, slice).expect("output tensor"));
            }
        }
        per_task
    }

    /// One `/predict` request of `tasks` tasks, natively: the response body.
    fn request(
        &self,
        session: &mut Session,
        images: &[Vec<u8>],
        urls: &[String],
        request: usize,
        tasks: usize,
        stages: &mut NativeStages,
    ) -> Vec<u8> {
        let started = Instant::now();
        let members: Vec<usize> = (0..tasks).map(|j| image_index(request, tasks, j)).collect();
        let prepared: Vec<Prepared> = members.iter().map(|&i| self.prepare(&images[i])).collect();
        stages.pre += started.elapsed();

        let started = Instant::now();
        let mut outputs: Vec<Option<Vec<hook_sdk::Tensor>>> = vec![None; tasks];
        let refs: Vec<&Prepared> = prepared.iter().collect();
        for batch in self.batches(&refs) {
            let parts: Vec<&Prepared> = batch.iter().map(|&i| &prepared[i]).collect();
            for (i, out) in batch.iter().zip(self.infer(session, &parts)) {
                outputs[*i] = Some(out);
            }
        }
        stages.inference += started.elapsed();

        let started = Instant::now();
        let results: Vec<Value> = outputs
            .into_iter()
            .enumerate()
            .map(|(j, out)| {
                let id = (request * tasks + j + 1) as i64;
                let image = members[j];
                let transform = prepared[j].transform;
                let ctx = Context::new(WitContext {
                    task_json: json!({"id": id, "data": {"image": &urls[image]}}).to_string(),
                    task_id: Some(id),
                    label_config: self.case.label_config.to_owned(),
                    model_version: "native".into(),
                    interactive_context: None,
                    model_inputs: self.inputs.clone(),
                    model_outputs: self.outputs.clone(),
                    model_metadata: self.metadata.clone(),
                    datapoints: vec![DatapointInfo {
                        field: "image".into(),
                        uri: Some(urls[image].clone()),
                        content_type: "image/png".into(),
                        image_width: Some(transform.original_width),
                        image_height: Some(transform.original_height),
                        transform: Some(transform),
                    }],
                    carry: None,
                });
                let outputs = Outputs::new(out.expect("every task was run"));
                let predictions = match self.case.name {
                    "classification" => classification_post(&outputs, &ctx),
                    "detection" => detection_post(&outputs, &ctx),
                    _ => polygons_post(&outputs, &ctx),
                }
                .expect("native post-processing");
                let mut ids = RegionIds::new(ctx.task_id());
                let mut list: Vec<Value> = predictions
                    .iter()
                    .map(|p| p.to_json(&mut ids, ctx.model_version()))
                    .collect();
                if list.len() == 1 {
                    list.remove(0)
                } else {
                    Value::Array(list)
                }
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "results": results })).expect("response JSON");
        stages.post += started.elapsed();
        stages.tasks += tasks;
        body
    }
}

/// Stacks images along dimension 0 into one ONNX Runtime value.
fn batch_value(parts: &[&Prepared]) -> DynValue {
    let mut shape: Vec<i64> = parts[0].shape.iter().map(|&d| d as i64).collect();
    shape[0] = parts.len() as i64;
    let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
    for p in parts {
        data.extend_from_slice(&p.data);
    }
    ort::value::Tensor::from_array((shape, data))
        .expect("input value")
        .into_dyn()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// NCHW f32, BGR order, ImageNet mean/std in that order (the examples' choice).
fn imagenet_bgr(name: &str) -> TensorOptions {
    TensorOptions::imagenet(name, Channels::Bgr)
}

fn transform_of(t: Transform) -> ImageTransform {
    ImageTransform {
        original_width: t.original_width,
        original_height: t.original_height,
        target_width: t.target_width,
        target_height: t.target_height,
        scale_x: t.scale_x,
        scale_y: t.scale_y,
        pad_x: t.pad_x,
        pad_y: t.pad_y,
    }
}

#[path = "../shared/direct_session.rs"]
mod direct_session;
pub use direct_session::{session, session_spinning};

fn spec(name: &str, dtype: &ValueType) -> TensorSpec {
    let (element_type, shape) = match dtype {
        ValueType::Tensor { ty, shape, .. } => (
            match ty {
                TensorElementType::Float32 => hook_sdk::ElementType::F32,
                TensorElementType::Int64 => hook_sdk::ElementType::I64,
                other => panic!("the bench's models have f32/i64 tensors, not {other:?}"),
            },
            shape.to_vec(),
        ),
        other => panic!("the bench's models have tensor inputs, not {other:?}"),
    };
    TensorSpec {
        name: name.to_owned(),
        element_type,
        shape,
    }
}

// The example post-hooks' functions, compiled natively. Each mirrors the
// `post_hook` of `examples/hooks/<name>-post/src/lib.rs` line for line,
// minus the `warn!` log calls (the log import exists only in a component).

/// `examples/hooks/classification-post`.
fn classification_post(out: &Outputs, ctx: &Context) -> Result<Vec<Prediction>, HookError> {
    let target = ctx.label_config()?.choices_for_image()?;
    let names = ctx.class_names()?;
    let scores = out.only()?.to_f32()?;
    let row = scores.outer(0).unwrap_or(scores.data());
    let probabilities = ops::as_probabilities(row);
    let Some(region) = Region::top_choice(&target, &names, &probabilities) else {
        return Ok(vec![Prediction::new(vec![])]);
    };
    Ok(vec![Prediction::new(vec![region]).with_mean_region_score()])
}

/// `examples/hooks/detection-post`.
fn detection_post(out: &Outputs, ctx: &Context) -> Result<Vec<Prediction>, HookError> {
    const NMS: Nms = Nms {
        iou_threshold: 0.5,
        max_candidates: 200,
        max_keep: 100,
    };
    let target = ctx.label_config()?.rectangle_labels_for_image()?;
    let names = ctx.class_names()?;
    let transform = ctx.image_transform()?;
    let head = GflHead {
        input_width: transform.target_width,
        input_height: transform.target_height,
        num_classes: names.len(),
        bins: 8,
        top_k_per_level: 1000,
    };
    let size = transform.original_size();
    let regions = head
        .decode_outputs(out)?
        .nms(0.5, &NMS)
        .into_iter()
        .filter_map(|d| {
            let label = target.resolve_label(names.get(d.class)?)?;
            let bbox = d.bbox.to_original(&transform);
            Some(
                Region::rectangle_labels(target, &bbox, size, [label])
                    .with_score(ops::widen(d.score)),
            )
        })
        .collect();
    Ok(vec![Prediction::new(regions).with_mean_region_score()])
}

/// `examples/hooks/polygons-post`.
fn polygons_post(out: &Outputs, ctx: &Context) -> Result<Vec<Prediction>, HookError> {
    let target = ctx.label_config()?.polygon_labels_for_image()?;
    let single = target.labels().count() == 1;
    let Some(label) = target
        .resolve_label("text")
        .or_else(|| target.labels().next().filter(|_| single))
    else {
        return Ok(vec![Prediction::new(vec![])]);
    };
    let transform = ctx.image_transform()?;
    let map = out.only()?.to_f32()?;
    let &[.., height, width] = map.shape() else {
        return Err(HookError::bad_config("expected a [1, 1, H, W] map"));
    };
    let mask = Mask::from_threshold(map.data(), width, height, 0.3)?.dilate(2, 2);
    let size = transform.original_size();
    let regions = mask
        .blobs()
        .into_iter()
        .take(1000)
        .filter_map(|blob| {
            let score = blob.mean(map.data());
            let outline =
                polygon::simplify(&blob.contour, 0.002 * polygon::perimeter(&blob.contour));
            if score < 0.5 || outline.len() < 4 {
                return None;
            }
            let grown = polygon::unclip(&outline, 1.6);
            if polygon::min_area_rect(&grown).1 < 5.0 {
                return None;
            }
            let points: Vec<Point> = grown.iter().map(|p| p.to_original(&transform)).collect();
            Some(
                Region::polygon_labels(target, &points, size, [label])
                    .with_score(ops::widen(score)),
            )
        })
        .collect();
    Ok(vec![Prediction::new(regions).with_mean_region_score()])
}

/// `examples/hooks/polygons-pre`'s `model_size`: the size rapidocr feeds
/// the detector for a `width`×`height` image, and whether it letterboxes.
fn polygons_model_size(width: u32, height: u32) -> (ImageSize, bool) {
    let (mut w, mut h) = (f64::from(width), f64::from(height));
    let to_32 = |side: f64| ((side.trunc() / 32.0).round_ties_even() * 32.0).max(32.0);
    if w.max(h) > 2000.0 {
        let ratio = 2000.0 / w.max(h);
        (w, h) = (to_32(w * ratio), to_32(h * ratio));
    }
    if w.min(h) < 30.0 {
        let ratio = 30.0 / w.min(h);
        (w, h) = (to_32(w * ratio), to_32(h * ratio));
    }
    let letterbox = h <= 30.0 || w / h > 8.0;
    if letterbox {
        let padded = ((w / 8.0).trunc().max(30.0) * 2.0 - h).abs();
        h += (padded / 2.0).trunc() * 2.0;
    }
    let ratio = if w.min(h) < 736.0 {
        736.0 / w.min(h)
    } else {
        1.0
    };
    (
        ImageSize {
            width: to_32(w * ratio) as u32,
            height: to_32(h * ratio) as u32,
        },
        letterbox,
    )
}
