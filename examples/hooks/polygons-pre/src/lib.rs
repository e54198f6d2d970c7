//! Pre-hook for `ch_PP-OCRv4_det_infer.onnx` (DBNet text detection).
//!
//! Mirrors rapidocr-onnxruntime 1.4.4's defaults (`config.yaml`,
//! `utils/process_img.py`, `ch_ppocr_det/utils.py` `DetPreProcess`): the
//! image is brought to sides that are multiples of 32, with the long side at
//! most 2000 and the short side at least 736 (very flat images get black
//! bars above and below first, as `main.py` `maybe_add_letterbox` does),
//! then scaled to 0–1 and normalised with mean = std = 0.5, NCHW, BGR
//! channel order.

use hook_sdk::{
    Channels, Context, Datapoints, Filter, HookError, ImageSize, PreOutput, TensorOptions,
};

/// rapidocr's `Global.max_side_len`: larger images are shrunk first.
const MAX_SIDE: u32 = 2000;
/// rapidocr's `Global.min_side_len`: tinier images are grown first.
const MIN_SIDE: u32 = 30;
/// rapidocr's `Det.limit_side_len` with `limit_type: min`.
const DET_MIN_SIDE: u32 = 736;
/// rapidocr's `Global.min_height`: images this flat get letterboxed.
const MIN_HEIGHT: f64 = 30.0;
/// rapidocr's `Global.width_height_ratio`: images wider than this get letterboxed.
const WIDTH_HEIGHT_RATIO: f64 = 8.0;

/// The size rapidocr feeds the detector for a `width`×`height` image, and
/// whether it pads the image with bars above and below to get there.
fn model_size(width: u32, height: u32) -> (ImageSize, bool) {
    let (mut w, mut h) = (f64::from(width), f64::from(height));
    // Python: int() truncates, round() rounds half to even.
    let to_32 = |side: f64| ((side.trunc() / 32.0).round_ties_even() * 32.0).max(32.0);
    if w.max(h) > f64::from(MAX_SIDE) {
        let ratio = f64::from(MAX_SIDE) / w.max(h);
        (w, h) = (to_32(w * ratio), to_32(h * ratio));
    }
    if w.min(h) < f64::from(MIN_SIDE) {
        let ratio = f64::from(MIN_SIDE) / w.min(h);
        (w, h) = (to_32(w * ratio), to_32(h * ratio));
    }
    let letterbox = h <= MIN_HEIGHT || w / h > WIDTH_HEIGHT_RATIO;
    if letterbox {
        let padded = ((w / WIDTH_HEIGHT_RATIO).trunc().max(MIN_HEIGHT) * 2.0 - h).abs();
        h += (padded / 2.0).trunc() * 2.0;
    }
    let ratio = if w.min(h) < f64::from(DET_MIN_SIDE) {
        f64::from(DET_MIN_SIDE) / w.min(h)
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

fn pre_hook(data: &Datapoints, ctx: &Context) -> Result<PreOutput, HookError> {
    let image = data.image(ctx)?.decode_image()?;
    let image = match model_size(image.width(), image.height()) {
        (size, true) => image.letterbox(size.width, size.height, 0)?,
        (size, false) => image.resize(size.width, size.height, Filter::Bilinear)?,
    };
    let options = TensorOptions::new(&ctx.first_input()?.name)
        .with_channels(Channels::Bgr)
        .with_normalization(&[0.5; 3], &[0.5; 3]);
    PreOutput::from_image(&image, &options)
}

hook_sdk::export_pre_hook!(pre_hook);

#[cfg(test)]
mod tests {
    use super::*;

    fn size(w: u32, h: u32) -> (u32, u32) {
        let (s, letterbox) = model_size(w, h);
        assert!(!letterbox, "{w}×{h} is not letterboxed");
        (s.width, s.height)
    }

    #[test]
    fn small_images_grow_until_the_short_side_is_736() {
        // 448×172 (skimage text.png): ratio 736/172 → 1916.x × 736.
        assert_eq!(size(448, 172), (1920, 736));
        assert_eq!(size(384, 191), (1472, 736));
    }

    #[test]
    fn large_images_only_round_to_32() {
        assert_eq!(size(1000, 800), (992, 800));
        assert_eq!(size(1500, 1000), (1504, 992));
    }

    #[test]
    fn huge_images_shrink_to_2000_first() {
        // 4000×3000 → 1984×1504 (2000 / 32 = 62.5 rounds half-even to 62; 1500 / 32 = 46.875 → 47).
        assert_eq!(size(4000, 3000), (1984, 1504));
    }

    #[test]
    fn flat_images_are_letterboxed_first() {
        // 1000×50 is wider than 8:1: bars make it 1000×250, then 736 / 250 scales it.
        assert_eq!(
            model_size(1000, 50),
            (
                ImageSize {
                    width: 2944,
                    height: 736
                },
                true
            )
        );
        let (s, letterbox) = model_size(10, 1);
        assert!(letterbox && s.width >= 32 && s.height >= 32, "{s:?}");
    }
}
