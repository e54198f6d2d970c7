//! Packing RGB pixels into a model's input tensor: channel order, layout
//! and normalisation in one pass over the pixels.
//!
//! An 8-bit sample has only 256 values, so each channel's normalisation is
//! a table of 256 results computed once per call; the pass over the pixels
//! is then a lookup and a store, with the layout's loop order fixed outside
//! the loop (planes one after another for NCHW, pixels in order for NHWC).
//! Each table entry is computed by the same expression the per-sample
//! arithmetic would use, so the tensor is bit for bit the same.

use image::RgbImage;

use super::{Channels, ImageError, Layout, TensorOptions};
use crate::tensor::{ElementType, Tensor, TensorData};

/// The pixels of `pixels` as a tensor with a batch dimension of 1.
pub(super) fn to_tensor(pixels: &RgbImage, options: &TensorOptions) -> Result<Tensor, ImageError> {
    let channels = options.channel_count() as usize;
    let (w, h) = (pixels.width() as u64, pixels.height() as u64);
    let shape = match options.layout {
        Layout::Nchw => vec![1, channels as u64, h, w],
        Layout::Nhwc => vec![1, h, w, channels as u64],
    };
    let mean = per_channel(&options.mean, channels, 0.0);
    let std = per_channel(&options.std, channels, 1.0);
    if std.contains(&0.0) {
        return Err(ImageError::InvalidArgument("std must not be 0".into()));
    }
    let samples = Samples::new(pixels, options.channels);
    let bytes = match options.element_type {
        ElementType::U8 => pack(&samples, options.layout, |_, value| [value]),
        ElementType::F32 => {
            let tables: Vec<[[u8; 4]; 256]> = (0..channels)
                .map(|c| {
                    let inv_std = 1.0 / std[c];
                    std::array::from_fn(|value| {
                        ((value as f32 * options.scale - mean[c]) * inv_std).to_le_bytes()
                    })
                })
                .collect();
            pack(&samples, options.layout, |c, value| {
                tables[c][usize::from(value)]
            })
        }
        other => {
            return Err(ImageError::InvalidArgument(format!(
                "image tensors are f32 or u8, not {other}"
            )));
        }
    };
    Tensor::new(
        options.name.clone(),
        options.element_type,
        shape,
        TensorData::Bytes(bytes),
    )
    .map_err(|e| ImageError::InvalidArgument(e.to_string()))
}

/// One value per channel: none given means `default`, one applies to all.
fn per_channel(values: &[f32], channels: usize, default: f32) -> Vec<f32> {
    (0..channels)
        .map(|c| match values {
            [] => default,
            [one] => *one,
            _ => values.get(c).copied().unwrap_or(default),
        })
        .collect()
}

/// The samples a tensor is made of: interleaved RGB read in the wanted
/// channel order, or one luma sample per pixel.
enum Samples<'a> {
    Color { rgb: &'a [u8], order: [usize; 3] },
    Gray(Vec<u8>),
}

impl<'a> Samples<'a> {
    fn new(pixels: &'a RgbImage, channels: Channels) -> Self {
        let rgb = pixels.as_raw().as_slice();
        match channels {
            Channels::Rgb => Samples::Color {
                rgb,
                order: [0, 1, 2],
            },
            Channels::Bgr => Samples::Color {
                rgb,
                order: [2, 1, 0],
            },
            // ITU-R BT.601 luma, as PIL's convert("L") computes it.
            Channels::Gray => Samples::Gray(
                rgb.chunks_exact(3)
                    .map(|p| {
                        ((u32::from(p[0]) * 299
                            + u32::from(p[1]) * 587
                            + u32::from(p[2]) * 114
                            + 500)
                            / 1000) as u8
                    })
                    .collect(),
            ),
        }
    }
}

/// Writes every sample through `encode(channel, value)` (the element's
/// little-endian bytes) in `layout` order.
fn pack<const N: usize>(
    samples: &Samples<'_>,
    layout: Layout,
    encode: impl Fn(usize, u8) -> [u8; N],
) -> Vec<u8> {
    match samples {
        Samples::Gray(luma) => {
            let mut out = vec![0u8; luma.len() * N];
            for (slot, &value) in out.chunks_exact_mut(N).zip(luma) {
                slot.copy_from_slice(&encode(0, value));
            }
            out
        }
        Samples::Color { rgb, order } => {
            let pixels = rgb.len() / 3;
            let mut out = vec![0u8; rgb.len() * N];
            if pixels == 0 {
                return out;
            }
            match layout {
                Layout::Nchw => {
                    for (c, plane) in out.chunks_exact_mut(pixels * N).enumerate() {
                        let source = order[c];
                        for (slot, pixel) in plane.chunks_exact_mut(N).zip(rgb.chunks_exact(3)) {
                            slot.copy_from_slice(&encode(c, pixel[source]));
                        }
                    }
                }
                Layout::Nhwc => {
                    for (slots, pixel) in out.chunks_exact_mut(3 * N).zip(rgb.chunks_exact(3)) {
                        for (c, slot) in slots.chunks_exact_mut(N).enumerate() {
                            slot.copy_from_slice(&encode(c, pixel[order[c]]));
                        }
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-sample arithmetic the tables stand for.
    fn reference(pixels: &RgbImage, options: &TensorOptions) -> Vec<u8> {
        let channels = options.channel_count() as usize;
        let (w, h) = (pixels.width() as usize, pixels.height() as usize);
        let mean = per_channel(&options.mean, channels, 0.0);
        let std = per_channel(&options.std, channels, 1.0);
        let mut out = Vec::new();
        let sample = |pixel: usize, c: usize| -> u8 {
            let p = &pixels.as_raw()[pixel * 3..pixel * 3 + 3];
            match options.channels {
                Channels::Gray => {
                    ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114 + 500) / 1000) as u8
                }
                Channels::Bgr => p[2 - c],
                Channels::Rgb => p[c],
            }
        };
        let order: Vec<(usize, usize)> = match options.layout {
            Layout::Nchw => (0..channels)
                .flat_map(|c| (0..w * h).map(move |p| (p, c)))
                .collect(),
            Layout::Nhwc => (0..w * h)
                .flat_map(|p| (0..channels).map(move |c| (p, c)))
                .collect(),
        };
        for (pixel, c) in order {
            let value = sample(pixel, c);
            match options.element_type {
                ElementType::U8 => out.push(value),
                _ => out.extend_from_slice(
                    &((value as f32 * options.scale - mean[c]) * (1.0 / std[c])).to_le_bytes(),
                ),
            }
        }
        out
    }

    #[test]
    fn every_layout_channel_order_and_type_packs_as_the_per_sample_arithmetic() {
        let pixels = RgbImage::from_fn(7, 5, |x, y| {
            image::Rgb([(x * 37 + y) as u8, (y * 51 + 3) as u8, (x * y * 13) as u8])
        });
        for layout in [Layout::Nchw, Layout::Nhwc] {
            for channels in [Channels::Rgb, Channels::Bgr, Channels::Gray] {
                for element_type in [ElementType::F32, ElementType::U8] {
                    let options = TensorOptions {
                        layout,
                        channels,
                        element_type,
                        ..TensorOptions::imagenet("x", channels)
                    };
                    let tensor = to_tensor(&pixels, &options).unwrap();
                    let TensorData::Bytes(bytes) = tensor.data() else {
                        panic!("byte tensor");
                    };
                    assert_eq!(
                        bytes,
                        &reference(&pixels, &options),
                        "{layout:?} {channels:?} {element_type}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_zero_std_and_a_non_image_element_type_are_refused() {
        let pixels = RgbImage::new(2, 2);
        let zero_std = TensorOptions {
            std: vec![0.0],
            ..TensorOptions::imagenet("x", Channels::Rgb)
        };
        assert!(to_tensor(&pixels, &zero_std).is_err());
        let int64 = TensorOptions {
            element_type: ElementType::I64,
            ..TensorOptions::imagenet("x", Channels::Rgb)
        };
        let err = to_tensor(&pixels, &int64).unwrap_err().to_string();
        assert!(err.contains("f32 or u8"), "{err}");
    }
}
