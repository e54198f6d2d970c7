//! Models that would make the process allocate without bound: a declared
//! input too large for one task is refused when the model loads, and a
//! graph that expands a scalar to 16 GiB at run time fails that inference
//! with an error while the process's peak memory stays put.
//!
//! The graphs are written here byte by byte (a few protobuf fields), so
//! the tests need ONNX Runtime but no Python.

use std::path::Path;
use std::sync::Arc;

use cls::model::ModelConfig;
use cls::model::{ModelCache, ModelLimits, ModelLoadError, ModelLoader, OrtError, OrtRuntime};
use cls::tensor::{ElementType, Tensor, TensorData};
use harness::{ort_library, require};

/// The cap on ONNX Runtime's memory in this test process.
const ORT_CAP: u64 = 1 << 30;
/// How much the process's peak resident memory may grow while a 16 GiB
/// `Expand` is refused.
const PEAK_GROWTH_BOUND: u64 = 256 << 20;

/// ONNX Runtime can be loaded once per process; every test here shares the
/// capped runtime.
fn ort() -> Option<Arc<OrtRuntime>> {
    let library = ort_library()?;
    Some(OrtRuntime::shared(Some(&library), Some(ORT_CAP)).expect("load ONNX Runtime"))
}

fn loader(ort: Arc<OrtRuntime>, dir: &Path) -> ModelLoader {
    let cache = ModelCache::new(dir.join("models"), 1 << 30).expect("model cache");
    ModelLoader::new(ort, cache, None)
}

fn config_for(path: &Path) -> ModelConfig {
    ModelConfig {
        uri: Some(path.display().to_string()),
        sessions: Some(1),
        ..ModelConfig::default()
    }
}

/// `VmHWM` (peak resident set) of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

#[tokio::test]
async fn a_model_declaring_a_huge_input_is_refused_at_load_with_its_size() {
    let ort = require!("ONNX Runtime", ort());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge_input.onnx");
    std::fs::write(&path, onnx::identity("x", &[1, 3, 16384, 16384])).expect("write model");

    let error = match loader(ort, dir.path()).load(&config_for(&path), None).await {
        Ok(_) => panic!("a model declaring a 3 GiB input loaded"),
        Err(error) => error,
    };

    assert!(
        matches!(error, ModelLoadError::InputTooLarge(_)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "model input 'x' declares [1,3,16384,16384] = 3 GiB of f32 per task; the limit is \
         256 MiB (CLS_MAX_INPUT_MB)"
    );
}

#[tokio::test]
async fn a_model_declaring_an_overflowing_input_is_refused_with_the_real_numbers() {
    let ort = require!("ONNX Runtime", ort());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("overflow.onnx");
    std::fs::write(&path, onnx::identity("x", &[1 << 40, 1 << 40, 3])).expect("write model");

    let error = match loader(ort, dir.path()).load(&config_for(&path), None).await {
        Ok(_) => panic!("a model declaring 2^80 elements loaded"),
        Err(error) => error.to_string(),
    };

    assert!(
        error.contains("[1099511627776,1099511627776,3]")
            && error.contains("more than 2^64 elements"),
        "{error}"
    );
}

#[tokio::test]
async fn the_input_limit_is_the_loaders_to_set() {
    let ort = require!("ONNX Runtime", ort());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("small.onnx");
    std::fs::write(&path, onnx::identity("x", &[1, 3, 224, 224])).expect("write model");
    let config = config_for(&path);

    let default = loader(ort.clone(), dir.path()).load(&config, None).await;
    let tight = loader(ort, dir.path())
        .with_limits(ModelLimits {
            max_input_bytes: 1 << 16,
        })
        .load(&config, None)
        .await;

    assert!(default.is_ok(), "588 KiB under the default limit");
    let error = tight.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("588 KiB of f32") && error.contains("the limit is 64 KiB"),
        "{error}"
    );
}

#[tokio::test]
async fn an_expand_to_16_gib_fails_with_an_error_and_the_process_stays_small() {
    let ort = require!("ONNX Runtime", ort());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("expand_bomb.onnx");
    let bomb = onnx::expand_bomb(65536, 65536);
    assert!(bomb.len() < 256, "the bomb is {} bytes", bomb.len());
    std::fs::write(&path, bomb).expect("write model");
    let loaded = loader(ort, dir.path())
        .load(&config_for(&path), None)
        .await
        .expect("the bomb's declared input is one float");
    let input = Tensor::new(
        "x",
        ElementType::F32,
        vec![1],
        TensorData::Bytes(1.0f32.to_le_bytes().to_vec()),
    )
    .expect("input tensor");

    let before = peak_rss();
    let result = loaded.model.run(vec![input]).await;
    let after = peak_rss();

    let error = match result {
        Ok(outputs) => panic!("the bomb ran: {} outputs", outputs.len()),
        Err(error) => error,
    };
    assert!(matches!(error, OrtError::OutOfMemory { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("1 GiB, CLS_ORT_MAX_MEMORY_MB") && message.contains("17179869184"),
        "{message}"
    );
    assert!(
        after.saturating_sub(before) < PEAK_GROWTH_BOUND,
        "peak RSS grew from {before} to {after} bytes"
    );
}

/// Just enough of the ONNX protobuf schema to write two tiny graphs.
mod onnx {
    const FLOAT: u64 = 1;
    const INT64: u64 = 7;

    fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// A varint field.
    fn int(field: u32, value: u64, out: &mut Vec<u8>) {
        varint(u64::from(field) << 3, out);
        varint(value, out);
    }

    /// A length-delimited field (string, bytes or message).
    fn bytes(field: u32, value: &[u8], out: &mut Vec<u8>) {
        varint((u64::from(field) << 3) | 2, out);
        varint(value.len() as u64, out);
        out.extend_from_slice(value);
    }

    fn message(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        build(&mut out);
        out
    }

    /// `ValueInfoProto` of a float tensor; `None` leaves the shape unknown.
    fn float_value(name: &str, shape: Option<&[i64]>) -> Vec<u8> {
        let tensor = message(|t| {
            int(1, FLOAT, t);
            if let Some(dims) = shape {
                let shape = message(|s| {
                    for &d in dims {
                        bytes(1, &message(|dim| int(1, d as u64, dim)), s);
                    }
                });
                bytes(2, &shape, t);
            }
        });
        let ty = message(|t| bytes(1, &tensor, t));
        message(|v| {
            bytes(1, name.as_bytes(), v);
            bytes(2, &ty, v);
        })
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> Vec<u8> {
        message(|n| {
            for input in inputs {
                bytes(1, input.as_bytes(), n);
            }
            bytes(2, output.as_bytes(), n);
            bytes(4, op.as_bytes(), n);
        })
    }

    fn model(graph: Vec<u8>) -> Vec<u8> {
        message(|m| {
            int(1, 8, m); // ir_version
            bytes(7, &graph, m);
            bytes(8, &message(|o| int(2, 13, o)), m); // opset 13
        })
    }

    /// `y = Identity(x)` with `x` of `shape`.
    pub fn identity(name: &str, shape: &[i64]) -> Vec<u8> {
        let graph = message(|g| {
            bytes(1, &node("Identity", &[name], "y"), g);
            bytes(2, b"identity", g);
            bytes(11, &float_value(name, Some(shape)), g);
            bytes(12, &float_value("y", None), g);
        });
        model(graph)
    }

    /// `y = Expand(x, [rows, cols])` for a one-float input `x`: the shape is
    /// an initializer, the value an input, so nothing is folded at load.
    pub fn expand_bomb(rows: i64, cols: i64) -> Vec<u8> {
        let shape = message(|t| {
            int(1, 2, t); // dims: [2]
            int(2, INT64, t);
            bytes(8, b"shape", t);
            let mut raw = rows.to_le_bytes().to_vec();
            raw.extend_from_slice(&cols.to_le_bytes());
            bytes(9, &raw, t);
        });
        let graph = message(|g| {
            bytes(1, &node("Expand", &["x", "shape"], "y"), g);
            bytes(2, b"bomb", g);
            bytes(5, &shape, g);
            bytes(11, &float_value("x", Some(&[1])), g);
            bytes(12, &float_value("y", None), g);
        });
        model(graph)
    }
}
