//! Preprocessing per stage: decode, resize, crop and tensor packing of the
//! classification example's pre-hook, per bench photo and on camera-sized
//! JPEGs, with the host's `cls::imageops`: each stage after a full decode,
//! the resize and crop fused (`window`: only the centre is resampled), then
//! the path the host's image helpers take (the header first, the pixels
//! decoded by the first resize, reduced for a large JPEG; the resize and
//! crop fused). A last column is the floor under any decoder: the entropy
//! decoding the format cannot skip (a JPEG decoded at 1/8, where the inverse
//! DCT keeps one coefficient per block; a PNG's inflate alone, without
//! unfiltering).
//!
//! Run: `cargo bench -p configurable-ls-backend --bench preprocess`, or
//! with `-- NAME...` to profile only the images whose names contain one of
//! the given strings.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cls::imageops::{
    Channels, EncodedImage, Filter, Image, MAX_DECODE_BYTES, TensorOptions, Window,
};

fn options() -> TensorOptions {
    TensorOptions::imagenet("x", Channels::Bgr)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(f());
        samples.push(t.elapsed());
    }
    median(samples)
}

/// Times each stage of the full decode path, then the host's path (header
/// first, pixels decoded by the resize, reduced for a large JPEG); returns
/// the host path, the full decode and the entropy decoding.
fn profile(name: &str, bytes: &[u8], runs: usize) -> Profile {
    let img = Image::decode(bytes, true).expect("decode");
    let (w, h) = (img.width(), img.height());
    let (nw, nh) = hook_sdk::image::short_side_size(w, h, 256);
    let decode = time(runs, || Image::decode(bytes, true).expect("decode"));
    let resized = img.resize(nw, nh, Filter::Lanczos3).expect("resize");
    let resize = time(runs, || {
        img.resize(nw, nh, Filter::Lanczos3).expect("resize")
    });
    let cropped = resized
        .crop((nw - 224) / 2, (nh - 224) / 2, 224, 224)
        .expect("crop");
    let crop = time(runs, || {
        resized
            .crop((nw - 224) / 2, (nh - 224) / 2, 224, 224)
            .expect("crop")
    });
    let opts = options();
    let tensor = time(runs, || cropped.to_tensor(&opts).expect("tensor"));
    let total = decode + resize + crop + tensor;
    let centre = Window::new((nw - 224) / 2, (nh - 224) / 2, 224, 224);
    let window = time(runs, || {
        img.resize_window(nw, nh, centre, Filter::Lanczos3)
            .expect("resize window")
    });
    let shared = Bytes::copy_from_slice(bytes);
    let host = time(runs, || {
        let encoded = EncodedImage::open(shared.clone(), true).expect("header");
        encoded
            .resize_window(nw, nh, centre, Filter::Lanczos3, MAX_DECODE_BYTES)
            .and_then(|i| i.to_tensor(&opts))
            .expect("host path")
    });
    let reduction = EncodedImage::open(shared.clone(), true)
        .expect("header")
        .reduction_for(nw, nh);
    let entropy = time(runs, || entropy_decode(bytes));
    println!(
        "  {name:<24} {w:>5}x{h:<5} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} (1/{reduction}) {:>8.2}",
        ms(decode),
        ms(resize),
        ms(crop),
        ms(tensor),
        ms(total),
        ms(window),
        ms(host),
        ms(entropy),
    );
    Profile {
        host,
        entropy,
        decode,
    }
}

/// One image's host path, its full decode and its entropy decoding alone.
struct Profile {
    host: Duration,
    entropy: Duration,
    decode: Duration,
}

/// The entropy decoding of `bytes`, the part of a decode no decoder skips;
/// returns how many bytes it produced.
fn entropy_decode(bytes: &[u8]) -> usize {
    if bytes.starts_with(b"\x89PNG") {
        return inflate_png(bytes);
    }
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().expect("jpeg header");
    let info = decoder.info().expect("jpeg info");
    decoder
        .scale(info.width.div_ceil(8), info.height.div_ceil(8))
        .expect("jpeg scale");
    decoder.decode().expect("jpeg decode").len()
}

/// Inflates a PNG's image data (its IDAT chunks, joined) into a buffer
/// sized from the header, as the `png` crate does before unfiltering.
fn inflate_png(bytes: &[u8]) -> usize {
    let (mut data, mut raw_len, mut at) = (Vec::new(), 0usize, 8);
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let (kind, body) = (&bytes[at + 4..at + 8], &bytes[at + 8..at + 8 + len]);
        match kind {
            b"IHDR" => {
                let width = u32::from_be_bytes(body[0..4].try_into().expect("4 bytes")) as usize;
                let height = u32::from_be_bytes(body[4..8].try_into().expect("4 bytes")) as usize;
                let channels = match body[9] {
                    0 | 3 => 1,
                    4 => 2,
                    2 => 3,
                    _ => 4,
                };
                let row = (width * channels * usize::from(body[8])).div_ceil(8);
                // Interlaced images' passes add a filter byte per row.
                raw_len = height * (row + 1) * 5 / 4 + 1024;
            }
            b"IDAT" => data.extend_from_slice(body),
            _ => {}
        }
        at += len + 12;
    }
    let (mut out, mut inflater) = (vec![0u8; raw_len], fdeflate::Decompressor::new());
    let (mut read, mut written) = (0, 0);
    while !inflater.is_done() {
        let (consumed, produced) = inflater
            .read(&data[read..], &mut out, written, true)
            .expect("inflate");
        assert!(
            consumed + produced > 0,
            "inflate stalled: output buffer too small"
        );
        read += consumed;
        written += produced;
    }
    written
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let dir = harness::assets_dir().join("images");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("images: run scripts/setup.sh")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("png" | "jpg")))
        .collect();
    paths.sort();
    // `cargo bench` passes `--bench`; anything else names images to keep.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    paths.retain(|p| {
        let name = p.to_string_lossy();
        wanted.is_empty() || wanted.iter().any(|w| name.contains(w.as_str()))
    });
    let name = |p: &std::path::Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string()
    };
    // scripts/py/make_images.py's stand-ins for camera photos.
    let (phones, photos): (Vec<_>, Vec<_>) = paths
        .into_iter()
        .partition(|p| name(p).starts_with("phone_"));
    println!("classification pre-hook work per image, median ms:");
    println!(
        "  {:<24} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}       {:>8}",
        "image",
        "size",
        "decode",
        "resize",
        "crop",
        "tensor",
        "total",
        "window",
        "host path",
        "entropy"
    );
    let profiles: Vec<Profile> = photos
        .iter()
        .map(|path| profile(&name(path), &std::fs::read(path).expect("read"), 30))
        .collect();
    let mean = |part: fn(&Profile) -> Duration| {
        ms(profiles.iter().map(part).sum::<Duration>()) / profiles.len().max(1) as f64
    };
    println!(
        "  mean over {} photos: host path {:.2} ms, of which decode {:.2} ms; \
         entropy decoding alone {:.2} ms",
        profiles.len(),
        mean(|p| p.host),
        mean(|p| p.decode),
        mean(|p| p.entropy),
    );
    let mut largest = None;
    for path in &phones {
        let phone = profile(&name(path), &std::fs::read(path).expect("read"), 10);
        if name(path).starts_with("phone_12mp") {
            largest = Some(ms(phone.host));
        }
    }
    print_targets((!profiles.is_empty()).then(|| mean(|p| p.host)), largest);
}

/// Issue 18's two preprocessing targets, for the images this run measured.
fn print_targets(mean_host_ms: Option<f64>, twelve_mp_host_ms: Option<f64>) {
    println!("targets:");
    let rows = [
        (
            "mean host path per bench photo <= 1.5 ms",
            mean_host_ms,
            1.5,
        ),
        (
            "12 MP JPEG to 224x224, host path <= 10 ms",
            twelve_mp_host_ms,
            10.0,
        ),
    ];
    for (what, measured, want) in rows {
        if let Some(measured) = measured {
            let verdict = if measured <= want { "met" } else { "MISSED" };
            println!(
                "  {what:<44} {measured:>8.2} ms {:>+9.2} ms  {verdict}",
                want - measured
            );
        }
    }
}
