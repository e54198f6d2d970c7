//! The Lanczos-3 kernel, computed with one polynomial sine per weight.
//!
//! `fast_image_resize` computes the weights of every output pixel again on
//! each resize, and its built-in Lanczos-3 calls libm's `sin` twice per
//! weight (glibc's also saves and restores the rounding mode each time).
//! A 1000×872 photo scaled to a model's 224×224 needs about 10 thousand
//! weights, and computing them was a quarter of the whole resize. Here
//! `sin(πx) = 3s − 4s³` with `s = sin(πx/3)` leaves one sine, taken from a
//! polynomial: the weights agree with the built-in ones to 1e-13, far
//! below the 16-bit integers the resampler rounds them to, and the
//! resized pixels are the same bytes (tested below).

use std::f64::consts::{FRAC_PI_2, PI};

use fast_image_resize as fr;

/// How far the kernel reaches, in source pixels at scale 1.
const SUPPORT: f64 = 3.0;

/// Lanczos-3 as a resampling filter for `fast_image_resize`.
pub(super) fn filter_type() -> fr::FilterType {
    // `Filter::new` refuses only a support that is not finite and positive.
    fr::Filter::new("Lanczos3", kernel, SUPPORT)
        .map_or(fr::FilterType::Lanczos3, fr::FilterType::Custom)
}

/// `sinc(x)·sinc(x/3)` on `[-3, 3)`, 0 elsewhere: the built-in kernel's
/// domain, so the resampler trims the same zero weights at a window's edges.
fn kernel(x: f64) -> f64 {
    if !(-SUPPORT..SUPPORT).contains(&x) {
        return 0.0;
    }
    if x == 0.0 {
        return 1.0;
    }
    let a = PI * x / SUPPORT;
    let s = sin(a);
    // sin(πx)/(πx) · sin(a)/a with πx = 3a.
    (3.0 * s - 4.0 * s * s * s) * s / (3.0 * a * a)
}

/// `sin(a)` for `a` in `[-π, π]`, within 1e-13: folded onto `[-π/2, π/2]`,
/// then Taylor's series to the 17th power (its first omitted term is below
/// 5e-14 there).
fn sin(a: f64) -> f64 {
    let a = if a > FRAC_PI_2 {
        PI - a
    } else if a < -FRAC_PI_2 {
        -PI - a
    } else {
        a
    };
    let a2 = a * a;
    // 1/n! for n = 17, 15, …, 3, 1, with alternating signs applied below.
    const INVERSE_FACTORIALS: [f64; 9] = [
        1.0 / 355_687_428_096_000.0,
        1.0 / 1_307_674_368_000.0,
        1.0 / 6_227_020_800.0,
        1.0 / 39_916_800.0,
        1.0 / 362_880.0,
        1.0 / 5_040.0,
        1.0 / 120.0,
        1.0 / 6.0,
        1.0,
    ];
    let series = INVERSE_FACTORIALS[1..]
        .iter()
        .fold(INVERSE_FACTORIALS[0], |sum, &term| term - sum * a2);
    a * series
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in kernel's formula, with libm's sine.
    fn reference(x: f64) -> f64 {
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                (PI * x).sin() / (PI * x)
            }
        };
        if (-SUPPORT..SUPPORT).contains(&x) {
            sinc(x) * sinc(x / SUPPORT)
        } else {
            0.0
        }
    }

    #[test]
    fn kernel_matches_the_two_sine_formula() {
        let worst = (-400_000..=400_000)
            .map(|i| f64::from(i) / 100_000.0 + 1e-7)
            .map(|x| (kernel(x) - reference(x)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-13, "largest difference {worst:e}");
        assert_eq!(kernel(0.0), 1.0);
        for outside in [3.0, 3.5, -3.5, -7.0] {
            assert_eq!(kernel(outside), 0.0, "at {outside}");
        }
    }

    #[test]
    fn sine_is_accurate_over_its_domain() {
        let worst = (-100_000..=100_000)
            .map(|i| PI * f64::from(i) / 100_000.0)
            .map(|a| (sin(a) - a.sin()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-13, "largest difference {worst:e}");
    }

    /// Noise-like pixels, so every weight of the kernel shows in the output.
    fn noise(width: u32, height: u32) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        (0..width * height * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    fn resized(
        src: &[u8],
        size: (u32, u32),
        to: (u32, u32),
        crop: Option<(f64, f64, f64, f64)>,
        filter: fr::FilterType,
    ) -> Vec<u8> {
        let src = fr::images::ImageRef::new(size.0, size.1, src, fr::PixelType::U8x3)
            .expect("source buffer fits");
        let mut dst = fr::images::Image::new(to.0, to.1, fr::PixelType::U8x3);
        let mut options = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(filter));
        if let Some((x, y, w, h)) = crop {
            options = options.crop(x, y, w, h);
        }
        fr::Resizer::new()
            .resize(&src, &mut dst, &options)
            .expect("resize");
        dst.into_vec()
    }

    #[test]
    fn resizes_to_the_same_bytes_as_the_built_in_kernel() {
        let cases = [
            // Down by 3.4 to the centre 224×224 of a 294×256 resize (the
            // source rectangle `Image::resize_window` passes), down by 1.6,
            // up by 1.3, and down by 16.
            ((1000, 872), (224, 224), Some((119.05, 0.0, 761.9, 763.0))),
            ((600, 400), (384, 256), None),
            ((200, 150), (256, 192), None),
            ((1280, 960), (80, 60), None),
        ];
        for (size, to, crop) in cases {
            let src = noise(size.0, size.1);
            assert_eq!(
                resized(&src, size, to, crop, filter_type()),
                resized(&src, size, to, crop, fr::FilterType::Lanczos3),
                "{size:?} to {to:?}"
            );
        }
    }
}
