//! Native image work: decoding (PNG, JPEG, WebP, BMP, TIFF) with EXIF
//! orientation, resizing, cropping, letterboxing and conversion to model
//! tensors.
//!
//! Hooks reach these through the WIT `host` interface so pixel loops never
//! run inside the sandbox; the built-in pre-hook and the benchmark's native
//! pipeline call them directly. This module owns pixels only: it knows
//! nothing about hooks, models or HTTP.

use std::io::Cursor;

use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::tensor::{ElementType, Tensor, TensorData};

/// Largest width or height we decode; larger images are refused before any
/// pixel memory is allocated.
pub const MAX_DIMENSION: u32 = 16_384;
/// Decoder allocation cap (a 16k×16k RGBA image is 1 GiB; we stop well before).
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// An upright 8-bit RGB image.
#[derive(Debug, Clone)]
pub struct Image {
    pixels: RgbImage,
}

/// Why an image operation failed; maps 1:1 onto the WIT `image-error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    #[error("unsupported image format: {0}")]
    UnsupportedFormat(String),
    #[error("cannot decode image: {0}")]
    DecodeFailed(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Bilinear,
    Cubic,
    Lanczos3,
}

/// Pixel layout of a tensor made from an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[1, C, H, W]`
    Nchw,
    /// `[1, H, W, C]`
    Nhwc,
}

/// Channel order of a tensor made from an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    Rgb,
    Bgr,
    Gray,
}

/// How pixels become tensor values: `(pixel * scale - mean[c]) / std[c]` for
/// `f32`, raw pixels for `u8`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorOptions {
    pub name: String,
    pub layout: Layout,
    pub channels: Channels,
    pub element_type: ElementType,
    pub scale: f32,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// How an image maps onto a model input: `original = (model - pad) / scale`.
/// Mirrors the WIT `image-transform`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Transform {
    pub original_width: u32,
    pub original_height: u32,
    pub target_width: u32,
    pub target_height: u32,
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
}

/// Width and height of an image, read from its header only.
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut decoder = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_decoder()
        .ok()?;
    let (w, h) = decoder.dimensions();
    let orientation = decoder.orientation().ok()?;
    Some(if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    })
}

fn swaps_axes(orientation: image::metadata::Orientation) -> bool {
    use image::metadata::Orientation as O;
    matches!(
        orientation,
        O::Rotate90 | O::Rotate270 | O::Rotate90FlipH | O::Rotate270FlipH
    )
}

impl Image {
    /// Decodes an image; with `apply_orientation` the EXIF orientation is
    /// applied so the result is upright as Label Studio shows it.
    pub fn decode(bytes: &[u8], apply_orientation: bool) -> Result<Self, ImageError> {
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ImageError::DecodeFailed(e.to_string()))?;
        if reader.format().is_none() {
            return Err(ImageError::UnsupportedFormat(
                "not PNG, JPEG, WebP, BMP or TIFF".into(),
            ));
        }
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_DIMENSION);
        limits.max_image_height = Some(MAX_DIMENSION);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        let mut decoder = reader.into_decoder().map_err(classify)?;
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut img = DynamicImage::from_decoder(decoder).map_err(classify)?;
        if apply_orientation {
            img.apply_orientation(orientation);
        }
        Ok(Self {
            pixels: img.into_rgb8(),
        })
    }

    /// Wraps RGB pixels.
    pub fn from_rgb(pixels: RgbImage) -> Self {
        Self { pixels }
    }

    pub fn width(&self) -> u32 {
        self.pixels.width()
    }

    pub fn height(&self) -> u32 {
        self.pixels.height()
    }

    /// Bytes of pixel memory this image holds.
    pub fn byte_len(&self) -> usize {
        self.pixels.as_raw().len()
    }

    /// A resized copy.
    pub fn resize(&self, width: u32, height: u32, filter: Filter) -> Result<Self, ImageError> {
        check_size(width, height)?;
        let mut dst = RgbImage::new(width, height);
        let alg = match filter {
            Filter::Nearest => fr::ResizeAlg::Nearest,
            Filter::Bilinear => fr::ResizeAlg::Convolution(fr::FilterType::Bilinear),
            Filter::Cubic => fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom),
            Filter::Lanczos3 => fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3),
        };
        fr::Resizer::new()
            .resize(
                &self.pixels,
                &mut dst,
                &fr::ResizeOptions::new().resize_alg(alg),
            )
            .map_err(|e| ImageError::InvalidArgument(e.to_string()))?;
        Ok(Self { pixels: dst })
    }

    /// A copy of the rectangle at `(x, y)`.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Result<Self, ImageError> {
        check_size(width, height)?;
        let fits = x.checked_add(width).is_some_and(|r| r <= self.width())
            && y.checked_add(height).is_some_and(|b| b <= self.height());
        if !fits {
            return Err(ImageError::InvalidArgument(format!(
                "crop {width}x{height} at ({x},{y}) is outside the {}x{} image",
                self.width(),
                self.height()
            )));
        }
        let pixels = image::imageops::crop_imm(&self.pixels, x, y, width, height).to_image();
        Ok(Self { pixels })
    }

    /// Scales to fit `width`×`height` keeping the aspect ratio, centred and
    /// padded with grey `fill`.
    pub fn letterbox(
        &self,
        width: u32,
        height: u32,
        fill: u8,
    ) -> Result<(Self, Transform), ImageError> {
        check_size(width, height)?;
        let scale = (width as f32 / self.width() as f32).min(height as f32 / self.height() as f32);
        let inner_w = ((self.width() as f32 * scale).round() as u32).clamp(1, width);
        let inner_h = ((self.height() as f32 * scale).round() as u32).clamp(1, height);
        let inner = self.resize(inner_w, inner_h, Filter::Bilinear)?;
        let pad_x = (width - inner_w) / 2;
        let pad_y = (height - inner_h) / 2;
        let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([fill; 3]));
        image::imageops::replace(&mut canvas, &inner.pixels, pad_x.into(), pad_y.into());
        let transform = Transform {
            original_width: self.width(),
            original_height: self.height(),
            target_width: width,
            target_height: height,
            scale_x: inner_w as f32 / self.width() as f32,
            scale_y: inner_h as f32 / self.height() as f32,
            pad_x: pad_x as f32,
            pad_y: pad_y as f32,
        };
        Ok((Self { pixels: canvas }, transform))
    }

    /// Resizes to exactly `width`×`height` (aspect ratio not kept) and
    /// returns the transform.
    pub fn stretch(&self, width: u32, height: u32) -> Result<(Self, Transform), ImageError> {
        let resized = self.resize(width, height, Filter::Bilinear)?;
        let transform = Transform {
            original_width: self.width(),
            original_height: self.height(),
            target_width: width,
            target_height: height,
            scale_x: width as f32 / self.width() as f32,
            scale_y: height as f32 / self.height() as f32,
            pad_x: 0.0,
            pad_y: 0.0,
        };
        Ok((resized, transform))
    }

    /// The pixels as a tensor with a batch dimension of 1.
    pub fn to_tensor(&self, options: &TensorOptions) -> Result<Tensor, ImageError> {
        let channels: usize = if options.channels == Channels::Gray {
            1
        } else {
            3
        };
        let (w, h) = (self.width() as usize, self.height() as usize);
        let shape = match options.layout {
            Layout::Nchw => vec![1, channels as u64, h as u64, w as u64],
            Layout::Nhwc => vec![1, h as u64, w as u64, channels as u64],
        };
        let per_channel = |values: &[f32], c: usize, default: f32| -> f32 {
            match values.len() {
                0 => default,
                1 => values[0],
                _ => values.get(c).copied().unwrap_or(default),
            }
        };
        let mean: Vec<f32> = (0..channels)
            .map(|c| per_channel(&options.mean, c, 0.0))
            .collect();
        let std: Vec<f32> = (0..channels)
            .map(|c| per_channel(&options.std, c, 1.0))
            .collect();
        if std.contains(&0.0) {
            return Err(ImageError::InvalidArgument("std must not be 0".into()));
        }
        let source_channel = |c: usize| match options.channels {
            Channels::Bgr => 2 - c,
            _ => c,
        };
        let raw = self.pixels.as_raw();
        let value_at = |pixel: usize, c: usize| -> u8 {
            let p = &raw[pixel * 3..pixel * 3 + 3];
            if options.channels == Channels::Gray {
                // ITU-R BT.601 luma, as PIL's convert("L") computes it.
                ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114 + 500) / 1000) as u8
            } else {
                p[source_channel(c)]
            }
        };
        let count = w * h * channels;
        let index = |pixel: usize, c: usize| match options.layout {
            Layout::Nchw => c * w * h + pixel,
            Layout::Nhwc => pixel * channels + c,
        };
        let bytes = match options.element_type {
            ElementType::U8 => {
                let mut out = vec![0u8; count];
                for pixel in 0..w * h {
                    for c in 0..channels {
                        out[index(pixel, c)] = value_at(pixel, c);
                    }
                }
                out
            }
            ElementType::F32 => {
                let mut out = vec![0f32; count];
                let inv_std: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
                for pixel in 0..w * h {
                    for c in 0..channels {
                        out[index(pixel, c)] =
                            (value_at(pixel, c) as f32 * options.scale - mean[c]) * inv_std[c];
                    }
                }
                out.iter().flat_map(|v| v.to_le_bytes()).collect()
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
}

fn check_size(width: u32, height: u32) -> Result<(), ImageError> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(ImageError::InvalidArgument(format!(
            "size {width}x{height} must be between 1 and {MAX_DIMENSION} on each side"
        )));
    }
    Ok(())
}

fn classify(err: image::ImageError) -> ImageError {
    match err {
        image::ImageError::Unsupported(e) => ImageError::UnsupportedFormat(e.to_string()),
        other => ImageError::DecodeFailed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 200]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decode_reads_size_and_rejects_garbage() {
        let img = Image::decode(&png(8, 4), true).unwrap();
        assert_eq!((img.width(), img.height()), (8, 4));
        assert_eq!(dimensions(&png(8, 4)), Some((8, 4)));
        assert!(matches!(
            Image::decode(b"not an image", true),
            Err(ImageError::UnsupportedFormat(_))
        ));
    }

    #[test]
    fn nchw_tensor_is_channel_planar_and_normalised() {
        let img = Image::decode(&png(2, 1), false).unwrap();
        let t = img
            .to_tensor(&TensorOptions {
                name: "x".into(),
                layout: Layout::Nchw,
                channels: Channels::Bgr,
                element_type: ElementType::F32,
                scale: 1.0,
                mean: vec![100.0],
                std: vec![2.0],
            })
            .unwrap();
        assert_eq!(t.shape(), &[1, 3, 1, 2]);
        // BGR: blue plane first (200), then green (y=0), then red (x).
        assert_eq!(
            t.to_f32_vec().unwrap(),
            vec![50.0, 50.0, -50.0, -50.0, -50.0, -49.5]
        );
    }

    #[test]
    fn letterbox_keeps_aspect_and_reports_padding() {
        let img = Image::decode(&png(200, 100), false).unwrap();
        let (boxed, t) = img.letterbox(100, 100, 114).unwrap();
        assert_eq!((boxed.width(), boxed.height()), (100, 100));
        assert_eq!((t.scale_x, t.pad_x, t.pad_y), (0.5, 0.0, 25.0));
    }

    #[test]
    fn crop_outside_the_image_is_an_error() {
        let img = Image::decode(&png(10, 10), false).unwrap();
        assert!(img.crop(5, 5, 6, 1).is_err());
        assert_eq!(img.crop(5, 5, 5, 5).unwrap().width(), 5);
    }
}
