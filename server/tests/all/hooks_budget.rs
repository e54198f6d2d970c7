//! The hook host interface governs its own memory and time: image work a
//! hook asks for is charged against its budget before anything is
//! allocated, runs off the async workers and stops at the hook's deadline;
//! what a hook says (errors, log lines, tensor names, carry) is bounded and
//! kept on one line. The `host-abuse` fixture does what each task tells it.

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cls::hooks::{
    Datapoint, Hook, HookCallError, HookContext, HookFailure, HookKind, HookLimits, HookRuntime,
    RuntimeOptions,
};
use harness::{fixture_hook, read};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

fn runtime() -> HookRuntime {
    HookRuntime::new(RuntimeOptions::default()).expect("hook runtime")
}

/// The server's default memory limit (256 MiB) and a deadline no loaded
/// machine turns into a timeout; tests that need others set them.
fn limits() -> HookLimits {
    HookLimits {
        timeout: Duration::from_secs(30),
        ..HookLimits::default()
    }
}

fn ctx(data: Value) -> HookContext {
    HookContext {
        task_json: json!({ "id": 7, "data": data }).to_string(),
        task_id: Some(7),
        label_config: "<View><Image name=\"image\" value=\"$image\"/></View>".into(),
        model_version: "v1".into(),
        ..HookContext::default()
    }
}

fn image_datapoint(bytes: Vec<u8>) -> Vec<Datapoint> {
    vec![Datapoint {
        field: "image".into(),
        uri: None,
        content_type: "image/png".into(),
        data: Bytes::from(bytes),
    }]
}

async fn abuse_hook(rt: &HookRuntime) -> Hook {
    rt.load(
        HookKind::Pre,
        Bytes::from(read(&fixture_hook("host-abuse"))),
    )
    .await
    .expect("host-abuse loads")
}

async fn run(
    rt: &HookRuntime,
    hook: &Hook,
    image: Vec<u8>,
    data: Value,
    limits: &HookLimits,
) -> Result<cls::hooks::PreOutput, HookCallError> {
    hook.call_pre(rt, &image_datapoint(image), &ctx(data), limits, "test")
        .await
}

/// A real 16×16 PNG.
fn small_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// Resident memory and its peak, in bytes, with the peak reset first so it
/// measures from now on (`/proc/self/clear_refs` 5). Each nextest test is
/// its own process, so other tests do not move it.
struct Rss {
    start: u64,
}

impl Rss {
    fn start() -> Self {
        std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
        Self {
            start: status_kib("VmRSS") * 1024,
        }
    }

    /// How far the peak rose above the resident memory at the start.
    fn growth(&self) -> u64 {
        (status_kib("VmHWM") * 1024).saturating_sub(self.start)
    }
}

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} missing from /proc/self/status"))
}

/// A valid PNG declaring `width`×`height` RGBA whose pixels (all zero) are
/// really there, deflated to a few MB: a decoder that trusts it writes
/// every one of its `width × height × 4` bytes.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let raw_len = u64::from(height) * (1 + u64::from(width) * 4);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib_zeros(raw_len));
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// A zlib stream of `len` zero bytes: one fixed-Huffman block of a literal
/// 0 followed by 258-byte copies at distance 1.
fn zlib_zeros(len: u64) -> Vec<u8> {
    let mut bits = BitWriter::default();
    bits.push(1, 1); // final block
    bits.push(1, 2); // fixed Huffman
    let literal_zero = |bits: &mut BitWriter| bits.push_code(0b0011_0000, 8);
    literal_zero(&mut bits);
    let mut left = len - 1;
    while left >= 258 {
        bits.push_code(0b1100_0101, 8); // length 258 (symbol 285)
        bits.push_code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        literal_zero(&mut bits);
    }
    bits.push_code(0, 7); // end of block
    let mut out = vec![0x78, 0x01];
    out.extend_from_slice(&bits.finish());
    // Adler-32 of zeros: a stays 1, b gains 1 per byte.
    let adler = (len % 65521) << 16 | 1;
    out.extend_from_slice(&(adler as u32).to_be_bytes());
    out
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    current: u32,
    used: u32,
}

impl BitWriter {
    /// Pushes `count` bits of `value`, least significant first.
    fn push(&mut self, value: u32, count: u32) {
        for i in 0..count {
            self.current |= ((value >> i) & 1) << self.used;
            self.used += 1;
            if self.used == 8 {
                self.bytes.push(self.current as u8);
                self.current = 0;
                self.used = 0;
            }
        }
    }

    /// Pushes a Huffman code, most significant bit first.
    fn push_code(&mut self, code: u32, count: u32) {
        for i in (0..count).rev() {
            self.push((code >> i) & 1, 1);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.used > 0 {
            self.bytes.push(self.current as u8);
        }
        self.bytes
    }
}

fn returned(err: &HookCallError) -> &str {
    match &err.failure {
        HookFailure::Returned(message) => message,
        other => panic!("expected the hook's own error, got: {other}"),
    }
}

#[test]
fn the_png_bomb_is_a_real_image() {
    // The bomb must be decodable for the memory tests to mean anything.
    let bomb = png_bomb(300, 200);
    let img = image::load_from_memory(&bomb).expect("the bomb decodes");
    assert_eq!((img.width(), img.height()), (300, 200));
    assert!(img.to_rgba8().iter().all(|&b| b == 0));
}

#[tokio::test]
async fn a_decode_bomb_is_refused_before_any_pixel_is_allocated() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    let bomb = png_bomb(11_500, 11_500);
    assert!(bomb.len() < 8 << 20, "the bomb is small: {}", bomb.len());
    let rss = Rss::start();
    let err = run(&rt, &hook, bomb, json!({"op": "decode"}), &limits())
        .await
        .expect_err("the bomb is refused");
    let growth = rss.growth();
    let message = returned(&err);
    assert!(
        message.starts_with("decode-failed: decoding image 11500×11500 (PNG) would need"),
        "{message}"
    );
    assert!(
        message.contains("this hook's budget is 256 MiB (limits.hook_memory_mb)"),
        "{message}"
    );
    eprintln!(
        "decode bomb 11500×11500: peak RSS rose {} MiB",
        growth / MIB
    );
    assert!(
        growth < 64 * MIB,
        "refusing the bomb cost {} MiB of host memory",
        growth / MIB
    );
}

#[tokio::test]
async fn an_image_within_the_budget_still_decodes() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    // 2000×2000 RGBA: 15 MiB decoded, 11 MiB as RGB; well within 256 MiB.
    run(
        &rt,
        &hook,
        png_bomb(2000, 2000),
        json!({"op": "decode"}),
        &limits(),
    )
    .await
    .expect("a normal image decodes");
}

#[tokio::test]
async fn huge_resize_and_letterbox_targets_are_refused_up_front() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    for op in ["resize", "letterbox"] {
        let rss = Rss::start();
        let err = run(
            &rt,
            &hook,
            small_png(),
            json!({"op": op, "width": 16384, "height": 16384}),
            &limits(),
        )
        .await
        .expect_err("refused");
        let growth = rss.growth();
        let message = returned(&err);
        assert!(message.starts_with("invalid-argument: "), "{message}");
        assert!(message.contains("into 16384×16384") || message.contains("to 16384×16384"));
        assert!(message.contains("would need"), "{message}");
        assert!(message.contains("(limits.hook_memory_mb)"), "{message}");
        eprintln!("{op} to 16384²: peak RSS rose {} MiB", growth / MIB);
        assert!(growth < 64 * MIB, "{op} cost {} MiB", growth / MIB);
    }
}

#[tokio::test]
async fn a_tensor_over_the_budget_is_refused_up_front() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    let small = HookLimits {
        memory_bytes: 64 << 20,
        ..limits()
    };
    let rss = Rss::start();
    // The 4000×4000 image (46 MiB) fits; its f32 tensor (183 MiB) does not.
    // The resize is done with the tensor, so the work counts the resizer's
    // intermediate image too (the 16 source rows at 4000 wide, 188 KiB).
    let err = run(
        &rt,
        &hook,
        small_png(),
        json!({"op": "to_tensor", "width": 4000, "height": 4000}),
        &small,
    )
    .await
    .expect_err("refused");
    let growth = rss.growth();
    let message = returned(&err);
    assert!(
        message.starts_with(
            "invalid-argument: the f32 tensor of the 4000×4000 image would need 183.3 MiB; \
             this hook's budget is 64 MiB, and images this call holds already use 45.8 MiB"
        ),
        "{message}"
    );
    eprintln!("to_tensor 4000² f32: peak RSS rose {} MiB", growth / MIB);
    assert!(growth < 46 * MIB + 64 * MIB, "cost {} MiB", growth / MIB);
}

#[tokio::test]
async fn an_input_handed_over_with_set_input_reaches_the_model_once_within_the_budget() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    let set_input = |width: u32, repeat: u32| json!({"op": "set_input", "width": width, "height": width / 2, "repeat": repeat});
    let output = run(&rt, &hook, small_png(), set_input(8, 1), &limits())
        .await
        .expect("one set-input");
    let [x] = &output.inputs[..] else {
        panic!("one input expected, got {}", output.inputs.len())
    };
    assert_eq!((x.name(), x.shape()), ("x", &[1u64, 3, 4, 8][..]));
    let values = x.to_f32_vec().expect("f32");
    assert!(values.iter().any(|v| *v > 0.0) && values.iter().all(|v| (0.0..=255.0).contains(v)));

    let err = run(&rt, &hook, small_png(), set_input(8, 2), &limits())
        .await
        .expect_err("the same input twice");
    let message = err.to_string();
    assert!(
        message.contains("gave the model input 'x' twice"),
        "{message}"
    );

    // A handed-over tensor stays charged to the call: a 1280×640 f32 tensor
    // (9.4 MiB) fits a 16 MiB budget beside its 2.3 MiB image once, not twice.
    let small = HookLimits {
        memory_bytes: 16 << 20,
        ..limits()
    };
    run(&rt, &hook, small_png(), set_input(1280, 1), &small)
        .await
        .expect("one 9.4 MiB input fits");
    let err = run(&rt, &hook, small_png(), set_input(1280, 2), &small)
        .await
        .expect_err("two do not");
    let message = returned(&err);
    assert!(
        message.starts_with("invalid-argument: the f32 tensor of the 1280×640 image would need")
            && message.contains("this hook's budget is 16 MiB"),
        "{message}"
    );
}

#[tokio::test]
async fn work_that_cannot_finish_before_the_deadline_is_refused_up_front() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    let short = HookLimits {
        timeout: Duration::from_millis(300),
        memory_bytes: 1 << 30,
        ..limits()
    };
    let started = Instant::now();
    let err = run(
        &rt,
        &hook,
        small_png(),
        json!({"op": "resize", "width": 16384, "height": 16384}),
        &short,
    )
    .await
    .expect_err("refused");
    match &err.failure {
        HookFailure::Returned(message) => {
            assert!(message.contains("would take at least"), "{message}");
            assert!(message.contains("(limits.hook_timeout_ms)"), "{message}");
        }
        // A slow machine may spend the 300 ms before the resize is asked for.
        HookFailure::Deadline(_) => {}
        other => panic!("{other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_hook_stops_at_its_deadline_while_the_pool_is_still_working() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    let limit = Duration::from_millis(800);
    let short = HookLimits {
        timeout: limit,
        memory_bytes: 1 << 30,
        ..limits()
    };
    let started = Instant::now();
    let err = run(
        &rt,
        &hook,
        small_png(),
        json!({"op": "letterbox", "width": 6000, "height": 6000, "repeat": 1000}),
        &short,
    )
    .await
    .expect_err("stopped");
    let elapsed = started.elapsed();
    // Either the deadline trapped a host call in flight, or the last call
    // was refused because it could not finish in time.
    match &err.failure {
        HookFailure::Deadline(_) => {}
        HookFailure::Returned(message) => assert!(message.contains("would take"), "{message}"),
        other => panic!("{other}"),
    }
    eprintln!("deadline {limit:?}: the call returned after {elapsed:?}");
    assert!(elapsed < limit + Duration::from_millis(500), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_workers_stay_responsive_while_eight_hooks_do_pixel_work() {
    let rt = Arc::new(runtime());
    let hook = Arc::new(abuse_hook(&rt).await);
    let heavy = json!({"op": "letterbox", "width": 2048, "height": 2048, "repeat": 2});
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (rt, hook, heavy) = (rt.clone(), hook.clone(), heavy.clone());
            tokio::spawn(async move { run(&rt, &hook, small_png(), heavy, &limits()).await })
        })
        .collect();
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while !calls.iter().all(|c| c.is_finished()) {
        let sent = Instant::now();
        let latency = tokio::spawn(async move { sent.elapsed() })
            .await
            .expect("probe");
        worst = worst.max(latency);
        probes += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(started.elapsed() < Duration::from_secs(120), "calls hang");
    }
    let work = started.elapsed();
    for call in calls {
        call.await.expect("join").expect("the heavy calls succeed");
    }
    eprintln!("{probes} probes over {work:?} of pixel work: worst scheduling latency {worst:?}");
    assert!(probes > 10, "the pixel work was too short to measure");
    assert!(worst < Duration::from_millis(100), "{worst:?}");
}

/// Collects what `tracing` writes on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut kept) = self.0.lock() {
            kept.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_newline_in_a_hook_log_line_cannot_forge_a_second_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    let forged = "done\n2026-12-02T10:00:00.000000Z ERROR cls::server: admin password reset\x1b[2K";
    run(
        &rt,
        &hook,
        small_png(),
        json!({"op": "log", "message": forged}),
        &limits(),
    )
    .await
    .expect("logging works");
    let text = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
    let hook_lines: Vec<&str> = text.lines().filter(|l| l.contains("hook: done")).collect();
    assert_eq!(hook_lines.len(), 1, "{text}");
    assert!(
        hook_lines[0].contains(
            "done\\n2026-12-02T10:00:00.000000Z ERROR cls::server: admin password reset\\u{1b}[2K"
        ),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("2026-12-02T10:00:00")),
        "a forged line: {text}"
    );
}

#[tokio::test]
async fn a_huge_error_message_is_cut_and_states_its_length() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    let err = run(
        &rt,
        &hook,
        small_png(),
        json!({"op": "error", "bytes": 100 << 20}),
        &limits(),
    )
    .await
    .expect_err("the hook fails");
    let text = err.to_string();
    assert!(text.len() < 5 * 1024, "{} bytes", text.len());
    assert!(text.ends_with("… (truncated, 104857600 bytes)"), "{text}");
    assert!(text.starts_with("pre-hook failed on task 7: returned an error: eee"));
}

#[tokio::test]
async fn many_tensor_names_give_a_short_error() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    let err = run(
        &rt,
        &hook,
        small_png(),
        json!({"op": "names", "count": 100_000}),
        &limits(),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(err.failure, HookFailure::InvalidOutput(_)),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.len() < 512, "{text}");
    assert!(text.contains("returned 100000 tensors"), "{text}");
}

#[tokio::test]
async fn a_carry_over_max_output_is_refused() {
    let rt = runtime();
    let hook = abuse_hook(&rt).await;
    let err = run(
        &rt,
        &hook,
        small_png(),
        json!({"op": "carry", "bytes": 30 << 20}),
        &limits(),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(
            err.failure,
            HookFailure::OutputTooLarge {
                what: "a carry",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("returned a carry of 31457280 bytes, over the 16777216-byte limit (limits.max_output_mb)"),
        "{err}"
    );
    let ok = run(
        &rt,
        &hook,
        small_png(),
        json!({"op": "carry", "bytes": 1 << 20}),
        &limits(),
    )
    .await
    .expect("a carry within the limit passes");
    assert_eq!(ok.carry.map(|c| c.len()), Some(1 << 20));
}
