//! Preprocessing per stage: decode, resize, crop and tensor packing of the
//! classification example's pre-hook, per bench photo and on camera-sized
//! JPEGs, with the host's `cls::imageops`: each stage after a full decode,
//! the resize and crop fused (`window`: only the centre is resampled), then
//! the path the host's image helpers take (the header first, the pixels
//! decoded by the first resize, reduced for a large JPEG; the resize and
//! crop fused).
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
/// the host path's total.
fn profile(name: &str, bytes: &[u8], runs: usize) -> Duration {
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
    println!(
        "  {name:<24} {w:>5}x{h:<5} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} (1/{reduction})",
        ms(decode),
        ms(resize),
        ms(crop),
        ms(tensor),
        ms(total),
        ms(window),
        ms(host),
    );
    host
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
        "  {:<24} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "image", "size", "decode", "resize", "crop", "tensor", "total", "window", "host path"
    );
    let mut sum = Duration::ZERO;
    for path in &photos {
        sum += profile(&name(path), &std::fs::read(path).expect("read"), 30);
    }
    println!(
        "  mean over {} photos, host path: {:.2} ms",
        photos.len(),
        ms(sum) / photos.len().max(1) as f64
    );
    for path in &phones {
        profile(&name(path), &std::fs::read(path).expect("read"), 10);
    }
}
