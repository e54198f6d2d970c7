//! Images: the host decodes and transforms pixels natively ([`Image`] wraps
//! the WIT `image` resource), while this module keeps track of the
//! [`ImageTransform`] from the original image to whatever the model sees, so
//! a post-hook can map model coordinates back to the original.
//!
//! ```no_run
//! # fn demo(bytes: &[u8]) -> Result<(), hook_sdk::HookError> {
//! use hook_sdk::{Filter, Image, TensorOptions};
//! let image = Image::decode(bytes, true)?          // upright, as Label Studio shows it
//!     .resize_short_side(256, Filter::Lanczos3)?
//!     .center_crop(224, 224)?;
//! let tensor = image.to_tensor(&TensorOptions::imagenet("x"))?;
//! let back = image.transform().to_original(0.0, 0.0); // crop corner in original pixels
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use crate::bindings::pre::cls::hooks::host::{
    self, Channels, ElementType, Filter, ImageError, Layout, TensorOptions,
};
use crate::bindings::pre::cls::hooks::types::{ImageTransform, Tensor};
use crate::error::HookError;

/// ImageNet channel means (RGB order), for `scale = 1/255` inputs.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB order).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Width and height of an image in pixels, named so they cannot be swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl ImageTransform {
    /// The transform of an image onto itself.
    pub fn identity(width: u32, height: u32) -> Self {
        Self {
            original_width: width,
            original_height: height,
            target_width: width,
            target_height: height,
            scale_x: 1.0,
            scale_y: 1.0,
            pad_x: 0.0,
            pad_y: 0.0,
        }
    }

    /// The original image's size: what Label Studio calls
    /// `original_width`/`original_height`.
    pub fn original_size(&self) -> ImageSize {
        ImageSize {
            width: self.original_width,
            height: self.original_height,
        }
    }

    /// The model-side size.
    pub fn target_size(&self) -> ImageSize {
        ImageSize {
            width: self.target_width,
            height: self.target_height,
        }
    }

    /// Maps a point in model pixels to original pixels:
    /// `original = (model - pad) / scale`.
    ///
    /// ```
    /// use hook_sdk::ImageTransform;
    /// // 400×200 letterboxed into 100×100: scale 0.25, 25 px bars top and bottom.
    /// let t = ImageTransform { original_width: 400, original_height: 200, target_width: 100,
    ///     target_height: 100, scale_x: 0.25, scale_y: 0.25, pad_x: 0.0, pad_y: 25.0 };
    /// assert_eq!(t.to_original(50.0, 50.0), (200.0, 100.0));
    /// assert_eq!(t.to_model(200.0, 100.0), (50.0, 50.0));
    /// ```
    pub fn to_original(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.pad_x) / self.scale_x,
            (y - self.pad_y) / self.scale_y,
        )
    }

    /// Maps a point in original pixels to model pixels.
    pub fn to_model(&self, x: f32, y: f32) -> (f32, f32) {
        (x * self.scale_x + self.pad_x, y * self.scale_y + self.pad_y)
    }

    /// This transform followed by `next` (which starts where this one ends).
    pub fn then(&self, next: &ImageTransform) -> ImageTransform {
        ImageTransform {
            original_width: self.original_width,
            original_height: self.original_height,
            target_width: next.target_width,
            target_height: next.target_height,
            scale_x: self.scale_x * next.scale_x,
            scale_y: self.scale_y * next.scale_y,
            pad_x: self.pad_x * next.scale_x + next.pad_x,
            pad_y: self.pad_y * next.scale_y + next.pad_y,
        }
    }

    /// Followed by a resize of the target to `width`×`height`.
    pub fn then_resize(&self, width: u32, height: u32) -> ImageTransform {
        let step = ImageTransform {
            original_width: self.target_width,
            original_height: self.target_height,
            target_width: width,
            target_height: height,
            scale_x: width as f32 / self.target_width.max(1) as f32,
            scale_y: height as f32 / self.target_height.max(1) as f32,
            pad_x: 0.0,
            pad_y: 0.0,
        };
        self.then(&step)
    }

    /// Followed by cropping the target to the rectangle at (`x`, `y`).
    pub fn then_crop(&self, x: u32, y: u32, width: u32, height: u32) -> ImageTransform {
        let step = ImageTransform {
            original_width: self.target_width,
            original_height: self.target_height,
            target_width: width,
            target_height: height,
            scale_x: 1.0,
            scale_y: 1.0,
            pad_x: -(x as f32),
            pad_y: -(y as f32),
        };
        self.then(&step)
    }

    /// The transform as JSON, e.g. for a pre-hook's `carry`.
    pub fn to_json(&self) -> String {
        // Serialising a struct of numbers cannot fail.
        serde_json::to_string(&TransformRepr::from(*self)).unwrap_or_default()
    }

    /// Parses [`ImageTransform::to_json`] output.
    pub fn from_json(json: &str) -> Result<Self, HookError> {
        let repr: TransformRepr = serde_json::from_str(json)
            .map_err(|e| HookError::failed(format_args!("carry is not an image transform: {e}")))?;
        Ok(repr.into())
    }
}

impl Serialize for ImageTransform {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TransformRepr::from(*self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ImageTransform {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        TransformRepr::deserialize(deserializer).map(Into::into)
    }
}

/// JSON shape of an [`ImageTransform`]: the WIT field names in snake case.
#[derive(Serialize, Deserialize)]
struct TransformRepr {
    original_width: u32,
    original_height: u32,
    target_width: u32,
    target_height: u32,
    scale_x: f32,
    scale_y: f32,
    pad_x: f32,
    pad_y: f32,
}

impl From<ImageTransform> for TransformRepr {
    fn from(t: ImageTransform) -> Self {
        Self {
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
}

impl From<TransformRepr> for ImageTransform {
    fn from(t: TransformRepr) -> Self {
        Self {
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
}

impl TensorOptions {
    /// NCHW, RGB, `f32`, pixels scaled to 0–1, no mean/std.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            layout: Layout::Nchw,
            channels: Channels::Rgb,
            element_type: ElementType::F32,
            scale: 1.0 / 255.0,
            mean: Vec::new(),
            std: Vec::new(),
        }
    }

    /// NCHW, RGB, `f32`, ImageNet mean/std: what most torchvision-style
    /// classifiers expect.
    pub fn imagenet(name: impl Into<String>) -> Self {
        Self::new(name).with_normalization(&IMAGENET_MEAN, &IMAGENET_STD)
    }

    /// Sets per-channel mean and std, applied in the tensor's channel order.
    pub fn with_normalization(mut self, mean: &[f32], std: &[f32]) -> Self {
        self.mean = mean.to_vec();
        self.std = std.to_vec();
        self
    }

    /// Sets the channel order.
    pub fn with_channels(mut self, channels: Channels) -> Self {
        self.channels = channels;
        self
    }

    /// Sets the layout.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Raw `u8` pixels instead of normalised floats.
    pub fn as_u8(mut self) -> Self {
        self.element_type = ElementType::U8;
        self.scale = 1.0;
        self.mean.clear();
        self.std.clear();
        self
    }
}

impl From<ImageError> for HookError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::UnsupportedFormat(m) => {
                HookError::BadInput(format!("unsupported image format: {m}"))
            }
            ImageError::DecodeFailed(m) => HookError::BadInput(format!("cannot decode image: {m}")),
            // Out-of-range arguments come from the hook's own arithmetic.
            ImageError::InvalidArgument(m) => HookError::Failed(format!("image operation: {m}")),
        }
    }
}

/// A decoded image held by the host, with the transform from the original.
#[derive(Debug)]
pub struct Image {
    inner: host::Image,
    transform: ImageTransform,
}

impl Image {
    /// Decodes PNG, JPEG, WebP, BMP or TIFF. With `apply_orientation` the
    /// EXIF orientation is applied, so the pixels (and `original_width`/
    /// `original_height`) match what Label Studio displays.
    pub fn decode(bytes: &[u8], apply_orientation: bool) -> Result<Self, HookError> {
        let inner = host::decode_image(bytes, apply_orientation)?;
        let transform = ImageTransform::identity(inner.width(), inner.height());
        Ok(Self { inner, transform })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.transform.target_width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.transform.target_height
    }

    /// The size of the decoded original.
    pub fn original_size(&self) -> ImageSize {
        self.transform.original_size()
    }

    /// How the decoded original maps onto this image.
    pub fn transform(&self) -> ImageTransform {
        self.transform
    }

    /// A copy resized to exactly `width`×`height` (aspect ratio not kept).
    pub fn resize(&self, width: u32, height: u32, filter: Filter) -> Result<Self, HookError> {
        Ok(Self {
            inner: self.inner.resize(width, height, filter)?,
            transform: self.transform.then_resize(width, height),
        })
    }

    /// A copy whose shorter side is `short` pixels, the other side scaled
    /// proportionally and rounded half to even (as Python's `round`, which
    /// the reference implementations use).
    pub fn resize_short_side(&self, short: u32, filter: Filter) -> Result<Self, HookError> {
        let (new_w, new_h) = short_side_size(self.width(), self.height(), short);
        self.resize(new_w, new_h, filter)
    }

    /// A copy of the rectangle at (`x`, `y`).
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Result<Self, HookError> {
        Ok(Self {
            inner: self.inner.crop(x, y, width, height)?,
            transform: self.transform.then_crop(x, y, width, height),
        })
    }

    /// The centred `width`×`height` rectangle; the offset is rounded down
    /// (`(W - w) // 2`). Fails when the image is smaller.
    pub fn center_crop(&self, width: u32, height: u32) -> Result<Self, HookError> {
        if self.width() < width || self.height() < height {
            return Err(HookError::bad_input(format_args!(
                "image is {}×{}, too small to crop {width}×{height}",
                self.width(),
                self.height()
            )));
        }
        self.crop(
            (self.width() - width) / 2,
            (self.height() - height) / 2,
            width,
            height,
        )
    }

    /// Scaled to fit `width`×`height` keeping the aspect ratio, padded with
    /// grey `fill`.
    pub fn letterbox(&self, width: u32, height: u32, fill: u8) -> Result<Self, HookError> {
        let (inner, step) = self.inner.letterbox(width, height, fill)?;
        Ok(Self {
            inner,
            transform: self.transform.then(&step),
        })
    }

    /// The pixels as a tensor with a batch dimension of 1.
    pub fn to_tensor(&self, options: &TensorOptions) -> Result<Tensor, HookError> {
        Ok(self.inner.to_tensor(options)?)
    }

    /// The tensor [`Image::to_tensor`] would return, handed to the host as
    /// the model input `options.name` without being copied into the hook
    /// and back (the faster way when the hook does not change the
    /// tensor). Leave that input out of the [`PreOutput`](crate::PreOutput)'s
    /// inputs: a name given both ways fails the call. Pre-hooks only.
    pub fn set_input(&self, options: &TensorOptions) -> Result<(), HookError> {
        Ok(self.inner.set_input(options)?)
    }
}

/// The size [`Image::resize_short_side`] gives a `width`×`height` image:
/// the shorter side `short`, the other scaled proportionally and rounded
/// half to even (as Python's `round`), neither below 1.
///
/// ```
/// assert_eq!(hook_sdk::image::short_side_size(640, 427, 256), (384, 256));
/// ```
pub fn short_side_size(width: u32, height: u32, short: u32) -> (u32, u32) {
    let ratio = f64::from(short) / f64::from(width.min(height).max(1));
    let scaled = |side: u32| (f64::from(side) * ratio).round_ties_even().max(1.0) as u32;
    (scaled(width), scaled(height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f32, f32), b: (f32, f32)) -> bool {
        (a.0 - b.0).abs() < 1e-3 && (a.1 - b.1).abs() < 1e-3
    }

    #[test]
    fn resize_then_centre_crop_maps_back_to_the_original() {
        // 640×480 → short side 256 → 341×256 → centre crop 224 at (58, 16).
        let t = ImageTransform::identity(640, 480)
            .then_resize(341, 256)
            .then_crop(58, 16, 224, 224);
        assert_eq!((t.target_width, t.target_height), (224, 224));
        assert!(close(
            t.to_original(0.0, 0.0),
            (58.0 * 640.0 / 341.0, 16.0 * 480.0 / 256.0)
        ));
        let p = t.to_model(320.0, 240.0);
        assert!(close(t.to_original(p.0, p.1), (320.0, 240.0)));
    }

    #[test]
    fn stretch_resize_uses_separate_scales() {
        let t = ImageTransform::identity(1000, 400).then_resize(608, 800);
        assert!(close(t.to_original(608.0, 800.0), (1000.0, 400.0)));
    }

    #[test]
    fn transform_round_trips_through_json() {
        let t = ImageTransform::identity(10, 20)
            .then_resize(5, 5)
            .then_crop(1, 1, 3, 3);
        let back = ImageTransform::from_json(&t.to_json()).unwrap();
        assert_eq!(back, t);
        assert!(ImageTransform::from_json("{}").is_err());
    }
}
