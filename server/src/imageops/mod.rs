//! Native image work: decoding (PNG, JPEG, WebP, BMP, TIFF) with EXIF
//! orientation, resizing, cropping, letterboxing and conversion to model
//! tensors, plus what that work costs before it is done.
//!
//! Hooks reach these through the WIT `host` interface so pixel loops never
//! run inside the sandbox; the built-in pre-hook and the benchmark's native
//! pipeline call them directly. This module owns pixels only: it knows
//! nothing about hooks, models or HTTP.
//!
//! Untrusted images are decoded with [`decode_within`], which reads the
//! header ([`decoded_size`]) and refuses an image whose pixels would not fit
//! a memory budget before allocating any of them. Every operation has a
//! `*_bytes` function saying how much it allocates, so a caller can refuse
//! it up front too, and [`estimated_time`] says how long it takes at least.
//! Pixel work belongs on [`crate::compute::pool`], never on an async worker
//! thread.

use std::io::Cursor;
use std::time::Duration;

use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::size::human;
use crate::tensor::{ElementType, Tensor};

mod encoded;
mod lanczos;
mod pack;

pub use encoded::{EncodedImage, MIN_REDUCED_PIXELS, REDUCING_GAP};

/// Largest width or height we decode; larger images are refused before any
/// pixel memory is allocated.
pub const MAX_DIMENSION: u32 = 16_384;
/// Decoder allocation cap (a 16k×16k RGBA image is 1 GiB; we stop well before).
pub const MAX_DECODE_BYTES: u64 = 512 << 20;
/// Bytes per pixel of an [`Image`] (8-bit RGB).
const RGB_BYTES: u64 = 3;
/// The least time pixel work takes per pixel touched (read or written).
/// A deliberately low floor, below what decoding, resizing or tensor
/// conversion costs on a fast core, so that only work that certainly cannot
/// finish in time is refused up front; the deadline stops the rest.
pub const MIN_NS_PER_PIXEL: f64 = 2.0;

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
    /// The work would allocate more than the caller's budget; nothing was
    /// allocated. `work` says what, e.g. "image 11500×11500 (PNG) … to decode".
    #[error("{work} would need {}; the budget is {}", human(*needed), human(*budget))]
    OverBudget {
        work: String,
        needed: u64,
        budget: u64,
    },
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

impl TensorOptions {
    /// NCHW `f32` in `channels` order, scaled to 0–1 and normalised with
    /// ImageNet's mean and std, given in that same order (as the hook SDK's
    /// `TensorOptions::imagenet` with `with_channels`).
    pub fn imagenet(name: impl Into<String>, channels: Channels) -> Self {
        Self {
            name: name.into(),
            layout: Layout::Nchw,
            channels,
            element_type: ElementType::F32,
            scale: 1.0 / 255.0,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// Bytes of the tensor of a `width`×`height` image.
    pub fn tensor_bytes(&self, width: u32, height: u32) -> u64 {
        let element = match self.element_type {
            ElementType::U8 => 1,
            _ => 4,
        };
        u64::from(width) * u64::from(height) * self.channel_count() * element
    }

    /// 1 for gray, 3 otherwise.
    pub fn channel_count(&self) -> u64 {
        if self.channels == Channels::Gray {
            1
        } else {
            3
        }
    }
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

/// A rectangle of an image, in pixels: `x`, `y` of its top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Window {
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// All of a `width`×`height` image.
    pub fn whole(width: u32, height: u32) -> Self {
        Self::new(0, 0, width, height)
    }

    /// Refuses a window that is empty or reaches outside a
    /// `width`×`height` image, in the words of a crop.
    pub fn check_within(&self, width: u32, height: u32) -> Result<(), ImageError> {
        let fits = self.width > 0
            && self.height > 0
            && self.x.checked_add(self.width).is_some_and(|r| r <= width)
            && self.y.checked_add(self.height).is_some_and(|b| b <= height);
        if fits {
            return Ok(());
        }
        Err(ImageError::InvalidArgument(format!(
            "crop {}x{} at ({},{}) is outside the {width}x{height} image",
            self.width, self.height, self.x, self.y
        )))
    }

    /// The window `inner` of this one (its corner given relative to this
    /// one's), or the error a crop outside the image gives.
    pub fn inner(&self, inner: Window) -> Result<Window, ImageError> {
        inner.check_within(self.width, self.height)?;
        Ok(Window::new(
            self.x + inner.x,
            self.y + inner.y,
            inner.width,
            inner.height,
        ))
    }

    /// Bytes of the window as 8-bit RGB.
    pub fn rgb_bytes(&self) -> u64 {
        rgb_bytes(self.width, self.height)
    }
}

/// What decoding an image costs, read from its header only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedSize {
    /// Width in pixels as stored (before EXIF orientation).
    pub width: u32,
    /// Height in pixels as stored.
    pub height: u32,
    /// The most memory decoding holds at once on the way to an upright RGB
    /// [`Image`]: the decoder's output in the file's own pixel type, the
    /// decoder's working memory where it needs a whole-image copy
    /// (progressive JPEG coefficients, WebP planes, TIFF strips), the
    /// rotated copy an EXIF rotation makes and the RGB conversion. An upper
    /// estimate; never less than the result itself.
    pub bytes: u64,
    /// The format, for messages ("PNG", "JPEG", …).
    pub format: &'static str,
}

impl DecodedSize {
    /// Pixels the decoder writes.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// What a message calls this image: `image 11500×11500 (PNG)`.
    pub fn describe(&self) -> String {
        format!("image {}×{} ({})", self.width, self.height, self.format)
    }
}

/// What decoding `bytes` would take, from the image header alone (no pixel
/// memory is allocated). Call it to refuse an image before decoding it, or
/// let [`decode_within`] do so.
pub fn decoded_size(bytes: &[u8]) -> Result<DecodedSize, ImageError> {
    let (format, mut decoder) = open_header(bytes, MAX_DECODE_BYTES)?;
    Ok(measure(format, bytes, &mut decoder))
}

/// Decodes an untrusted image into at most `max_bytes` of memory: the
/// header's declared size is checked first ([`decoded_size`]), so an image
/// over the budget (a decompression bomb) is refused with
/// [`ImageError::OverBudget`] before any pixel memory is allocated, and one
/// over [`MAX_DIMENSION`] with [`ImageError::DecodeFailed`]. The decoder
/// gets the same limits as a second line of defence. With
/// `apply_orientation` the EXIF orientation is applied.
///
/// This is CPU-bound work: run it on [`crate::compute::pool`], not on an
/// async worker.
pub fn decode_within(
    bytes: &[u8],
    apply_orientation: bool,
    max_bytes: u64,
) -> Result<Image, ImageError> {
    let (format, mut decoder) = open_header(bytes, max_bytes)?;
    let size = measure(format, bytes, &mut decoder);
    check_dimensions(&size)?;
    if size.bytes > max_bytes {
        return Err(ImageError::OverBudget {
            work: format!("decoding {}", size.describe()),
            needed: size.bytes,
            budget: max_bytes,
        });
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(max_bytes);
    decoder.set_limits(limits).map_err(classify)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(classify)?;
    if apply_orientation {
        img.apply_orientation(orientation);
    }
    Ok(Image {
        pixels: into_rgb(img),
    })
}

/// The image as 8-bit RGB. Gray images, common among scans, take a direct
/// loop: `image`'s generic conversion costs several times the decode.
fn into_rgb(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma8(gray) => {
            let (width, height) = gray.dimensions();
            match RgbImage::from_raw(width, height, gray_to_rgb(gray.as_raw())) {
                Some(rgb) => rgb,
                None => DynamicImage::ImageLuma8(gray).into_rgb8(),
            }
        }
        other => other.into_rgb8(),
    }
}

/// Gray samples repeated into R, G and B.
fn gray_to_rgb(gray: &[u8]) -> Vec<u8> {
    let mut rgb = vec![0; gray.len() * 3];
    for (pixel, &value) in rgb.chunks_exact_mut(3).zip(gray) {
        pixel.fill(value);
    }
    rgb
}

/// Refuses an image larger than [`MAX_DIMENSION`] on a side.
fn check_dimensions(size: &DecodedSize) -> Result<(), ImageError> {
    if size.width > MAX_DIMENSION || size.height > MAX_DIMENSION {
        return Err(ImageError::DecodeFailed(format!(
            "{} is larger than {MAX_DIMENSION} pixels on a side",
            size.describe()
        )));
    }
    Ok(())
}

/// A decoder that has read the header only.
fn open_header(
    bytes: &[u8],
    max_alloc: u64,
) -> Result<(ImageFormat, impl ImageDecoder + '_), ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::DecodeFailed(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(ImageError::UnsupportedFormat(
            "not PNG, JPEG, WebP, BMP or TIFF".into(),
        ));
    };
    // Dimensions are checked by the caller, with a message that states
    // them; the allocation cap bounds the PNG decoder's metadata chunks.
    let mut limits = image::Limits::no_limits();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(classify)?;
    Ok((format, decoder))
}

fn measure(format: ImageFormat, bytes: &[u8], decoder: &mut impl ImageDecoder) -> DecodedSize {
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    let native = decoder.total_bytes();
    let working = match format {
        // i16 coefficients for every sample, kept for the whole image.
        ImageFormat::Jpeg if jpeg_is_progressive(bytes) => native.saturating_mul(2),
        // Lossless: one u32 per pixel; lossy: YUV planes (less).
        ImageFormat::WebP => pixels.saturating_mul(4),
        ImageFormat::Tiff => native,
        _ => 0,
    };
    let conversion = if decoder.color_type() == image::ColorType::Rgb8 {
        0
    } else {
        pixels.saturating_mul(RGB_BYTES)
    };
    let rotation = match decoder.orientation() {
        Ok(o) if rotates(o) => native,
        _ => 0,
    };
    DecodedSize {
        width,
        height,
        bytes: native
            .saturating_add(working)
            .saturating_add(conversion)
            .saturating_add(rotation),
        format: format_name(format),
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Tiff => "TIFF",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Gif => "GIF",
        _ => "image",
    }
}

/// Whether a JPEG is progressive (its frame header is SOF2, SOF6, SOF10 or
/// SOF14). Anything unreadable counts as progressive: the larger estimate.
fn jpeg_is_progressive(bytes: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            return true;
        }
        let marker = bytes[at + 1];
        match marker {
            0xFF => at += 1,
            0x01 | 0xD0..=0xD8 => at += 2,
            0xC2 | 0xC6 | 0xCA | 0xCE => return true,
            0xC0 | 0xC1 | 0xC3 | 0xC5 | 0xC7 | 0xC9 | 0xCB | 0xCD | 0xCF => return false,
            0xDA => return true,
            _ => {
                let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
                at += 2 + length;
            }
        }
    }
    true
}

/// Bytes of an 8-bit RGB image of this size.
pub fn rgb_bytes(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height) * RGB_BYTES
}

/// The least time pixel work touching `pixels` pixels takes (see
/// [`MIN_NS_PER_PIXEL`]): work estimated over the time left can be refused
/// before it starts.
pub fn estimated_time(pixels: u64) -> Duration {
    Duration::from_secs_f64(pixels as f64 * MIN_NS_PER_PIXEL * 1e-9)
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

/// Whether applying `orientation` makes a rotated copy (flips and 180° are
/// done in place).
fn rotates(orientation: image::metadata::Orientation) -> bool {
    swaps_axes(orientation)
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
    /// applied so the result is upright as Label Studio shows it. Images
    /// needing more than [`MAX_DECODE_BYTES`] are refused before decoding;
    /// see [`decode_within`] for a budget of your own.
    pub fn decode(bytes: &[u8], apply_orientation: bool) -> Result<Self, ImageError> {
        decode_within(bytes, apply_orientation, MAX_DECODE_BYTES)
    }

    /// Wraps RGB pixels.
    pub fn from_rgb(pixels: RgbImage) -> Self {
        Self { pixels }
    }

    /// The pixels.
    pub fn rgb(&self) -> &RgbImage {
        &self.pixels
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

    /// Pixels in this image.
    pub fn pixel_count(&self) -> u64 {
        u64::from(self.width()) * u64::from(self.height())
    }

    /// What [`Image::resize`] to `width`×`height` allocates: the result and
    /// the resizer's intermediate image (one pass's output), or the error
    /// `resize` would return for that size.
    pub fn resize_bytes(&self, width: u32, height: u32) -> Result<u64, ImageError> {
        check_size(width, height)?;
        let intermediate = rgb_bytes(width, self.height()).max(rgb_bytes(self.width(), height));
        Ok(rgb_bytes(width, height) + intermediate)
    }

    /// What [`Image::resize_window`] allocates: the window and the
    /// resizer's intermediate image (at most one pass's output).
    pub fn resize_window_bytes(
        &self,
        width: u32,
        height: u32,
        window: Window,
    ) -> Result<u64, ImageError> {
        check_resize_window(width, height, window)?;
        let intermediate =
            rgb_bytes(window.width, self.height()).max(rgb_bytes(self.width(), window.height));
        Ok(window.rgb_bytes() + intermediate)
    }

    /// What [`Image::crop`] to `width`×`height` allocates.
    pub fn crop_bytes(&self, width: u32, height: u32) -> Result<u64, ImageError> {
        check_size(width, height)?;
        Ok(rgb_bytes(width, height))
    }

    /// What [`Image::letterbox`] to `width`×`height` allocates: the canvas
    /// and the scaled image pasted into it.
    pub fn letterbox_bytes(&self, width: u32, height: u32) -> Result<u64, ImageError> {
        check_size(width, height)?;
        let (inner_w, inner_h) = letterbox_inner((self.width(), self.height()), width, height);
        Ok(rgb_bytes(width, height) + self.resize_bytes(inner_w, inner_h)?)
    }

    /// What [`Image::to_tensor`] allocates: the tensor's bytes.
    pub fn tensor_bytes(&self, options: &TensorOptions) -> u64 {
        options.tensor_bytes(self.width(), self.height())
    }

    /// A resized copy.
    pub fn resize(&self, width: u32, height: u32, filter: Filter) -> Result<Self, ImageError> {
        self.resize_window(width, height, Window::whole(width, height), filter)
    }

    /// The `window` of this image resized to `width`×`height`: the pixels
    /// `resize(width, height)` followed by `crop(window)` gives, computing
    /// only those (a centre crop after a resize resamples a third less).
    pub fn resize_window(
        &self,
        width: u32,
        height: u32,
        window: Window,
        filter: Filter,
    ) -> Result<Self, ImageError> {
        check_resize_window(width, height, window)?;
        let mut dst = RgbImage::new(window.width, window.height);
        let alg = match filter {
            Filter::Nearest => fr::ResizeAlg::Nearest,
            Filter::Bilinear => fr::ResizeAlg::Convolution(fr::FilterType::Bilinear),
            Filter::Cubic => fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom),
            Filter::Lanczos3 => fr::ResizeAlg::Convolution(lanczos::filter_type()),
        };
        let mut options = fr::ResizeOptions::new().resize_alg(alg);
        if window != Window::whole(width, height) {
            // The source rectangle that maps onto the window; the filter
            // still reads the pixels around it, as the full resize does.
            let scale_x = f64::from(self.width()) / f64::from(width);
            let scale_y = f64::from(self.height()) / f64::from(height);
            options = options.crop(
                f64::from(window.x) * scale_x,
                f64::from(window.y) * scale_y,
                f64::from(window.width) * scale_x,
                f64::from(window.height) * scale_y,
            );
        }
        fr::Resizer::new()
            .resize(&self.pixels, &mut dst, &options)
            .map_err(|e| ImageError::InvalidArgument(e.to_string()))?;
        Ok(Self { pixels: dst })
    }

    /// A copy of the rectangle at `(x, y)`.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Result<Self, ImageError> {
        check_size(width, height)?;
        Window::new(x, y, width, height).check_within(self.width(), self.height())?;
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
        let original = (self.width(), self.height());
        let inner = letterbox_inner(original, width, height);
        self.letterbox_inner_size(inner, original, width, height, fill)
    }

    /// Letterboxes this image, resized to `inner`, into `width`×`height`;
    /// the transform maps from an image of size `original` (this one, or
    /// the full-size image a reduced decode stands for).
    fn letterbox_inner_size(
        &self,
        (inner_w, inner_h): (u32, u32),
        (original_w, original_h): (u32, u32),
        width: u32,
        height: u32,
        fill: u8,
    ) -> Result<(Self, Transform), ImageError> {
        check_size(width, height)?;
        let inner = self.resize(inner_w, inner_h, Filter::Bilinear)?;
        let pad_x = (width - inner_w) / 2;
        let pad_y = (height - inner_h) / 2;
        let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([fill; 3]));
        image::imageops::replace(&mut canvas, &inner.pixels, pad_x.into(), pad_y.into());
        let transform = Transform {
            target_width: width,
            target_height: height,
            pad_x: pad_x as f32,
            pad_y: pad_y as f32,
            ..Transform::stretch(original_w, original_h, inner_w, inner_h)
        };
        Ok((Self { pixels: canvas }, transform))
    }

    /// Resizes to exactly `width`×`height` (aspect ratio not kept) and
    /// returns the transform.
    pub fn stretch(&self, width: u32, height: u32) -> Result<(Self, Transform), ImageError> {
        let resized = self.resize(width, height, Filter::Bilinear)?;
        let transform = Transform::stretch(self.width(), self.height(), width, height);
        Ok((resized, transform))
    }

    /// The pixels as a tensor with a batch dimension of 1.
    pub fn to_tensor(&self, options: &TensorOptions) -> Result<Tensor, ImageError> {
        pack::to_tensor(&self.pixels, options)
    }
}

/// The size of an `original`-sized image scaled to fit `width`×`height`.
pub fn letterbox_inner(
    (original_w, original_h): (u32, u32),
    width: u32,
    height: u32,
) -> (u32, u32) {
    let scale = (width as f32 / original_w as f32).min(height as f32 / original_h as f32);
    let inner_w = ((original_w as f32 * scale).round() as u32).clamp(1, width);
    let inner_h = ((original_h as f32 * scale).round() as u32).clamp(1, height);
    (inner_w, inner_h)
}

impl Transform {
    /// An `original`-sized image resized to `width`×`height`, no padding.
    pub fn stretch(original_w: u32, original_h: u32, width: u32, height: u32) -> Self {
        Self {
            original_width: original_w,
            original_height: original_h,
            target_width: width,
            target_height: height,
            scale_x: width as f32 / original_w as f32,
            scale_y: height as f32 / original_h as f32,
            pad_x: 0.0,
            pad_y: 0.0,
        }
    }
}

/// Refuses an empty size, or one larger than [`MAX_DIMENSION`] on a side.
fn check_size(width: u32, height: u32) -> Result<(), ImageError> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(ImageError::InvalidArgument(format!(
            "size {width}x{height} must be between 1 and {MAX_DIMENSION} on each side"
        )));
    }
    Ok(())
}

/// Refuses a resize to an empty `width`×`height` or one larger than
/// [`MAX_DIMENSION`] on a side, or one whose `window` is not inside it.
pub fn check_resize_window(width: u32, height: u32, window: Window) -> Result<(), ImageError> {
    check_size(width, height)?;
    window.check_within(width, height)
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
    fn a_resized_window_is_the_crop_of_the_full_resize() {
        // Detail at every scale, so that a misplaced filter tap shows.
        let img = Image::from_rgb(RgbImage::from_fn(641, 427, |x, y| {
            let check = if (x / 3 + y / 5) % 2 == 0 { 90 } else { 0 };
            image::Rgb([
                (x * 255 / 641) as u8 ^ check,
                ((x * 7 + y * 13) % 256) as u8,
                (y * 255 / 427) as u8,
            ])
        }));
        let cases = [
            (384, 256, Window::new(80, 16, 224, 224), Filter::Lanczos3),
            (256, 171, Window::new(0, 0, 256, 100), Filter::Bilinear),
            (1000, 700, Window::new(999, 1, 1, 699), Filter::Cubic),
            (320, 213, Window::new(13, 7, 300, 200), Filter::Nearest),
        ];
        for (width, height, window, filter) in cases {
            let full = img
                .resize(width, height, filter)
                .unwrap()
                .crop(window.x, window.y, window.width, window.height)
                .unwrap();
            let fused = img.resize_window(width, height, window, filter).unwrap();
            let worst = full
                .rgb()
                .as_raw()
                .iter()
                .zip(fused.rgb().as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max();
            assert_eq!(
                worst,
                Some(0),
                "{width}x{height} {window:?} {filter:?}: pixels differ"
            );
            assert!(
                img.resize_window_bytes(width, height, window).unwrap() >= fused.byte_len() as u64
            );
        }
        let outside = img.resize_window(100, 100, Window::new(50, 0, 51, 10), Filter::Bilinear);
        assert!(
            matches!(&outside, Err(ImageError::InvalidArgument(m)) if m.contains("outside")),
            "{outside:?}"
        );
    }

    #[test]
    fn letterbox_keeps_aspect_and_reports_padding() {
        let img = Image::decode(&png(200, 100), false).unwrap();
        let (boxed, t) = img.letterbox(100, 100, 114).unwrap();
        assert_eq!((boxed.width(), boxed.height()), (100, 100));
        assert_eq!((t.scale_x, t.pad_x, t.pad_y), (0.5, 0.0, 25.0));
    }

    fn encode(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// A JPEG whose frame header claims `width`×`height` (no CRC to fix).
    fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
        let mut jpeg = encode(64, 48, image::ImageFormat::Jpeg);
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        jpeg
    }

    /// A BMP header claiming `width`×`height` 24-bit pixels, with none.
    fn bmp_claiming(width: i32, height: i32) -> Vec<u8> {
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&54u32.to_le_bytes()); // file size (a lie)
        bmp.extend_from_slice(&[0; 4]);
        bmp.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
        bmp.extend_from_slice(&40u32.to_le_bytes()); // BITMAPINFOHEADER
        bmp.extend_from_slice(&width.to_le_bytes());
        bmp.extend_from_slice(&height.to_le_bytes());
        bmp.extend_from_slice(&1u16.to_le_bytes()); // planes
        bmp.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
        bmp.extend_from_slice(&[0; 24]); // no compression, sizes, palette
        bmp
    }

    #[test]
    fn decoded_size_reads_every_format_from_its_header() {
        for (format, name) in [
            (image::ImageFormat::Png, "PNG"),
            (image::ImageFormat::Jpeg, "JPEG"),
            (image::ImageFormat::WebP, "WebP"),
            (image::ImageFormat::Tiff, "TIFF"),
            (image::ImageFormat::Bmp, "BMP"),
        ] {
            let size = decoded_size(&encode(64, 48, format)).unwrap();
            assert_eq!((size.width, size.height, size.format), (64, 48, name));
            assert!(size.bytes >= rgb_bytes(64, 48), "{name}: {size:?}");
            assert!(size.bytes <= 4 * rgb_bytes(64, 48), "{name}: {size:?}");
        }
    }

    #[test]
    fn header_bombs_are_refused_before_decoding() {
        let budget = 256 << 20;
        for (bomb, name) in [
            (jpeg_claiming(11_500, 11_500), "JPEG"),
            (bmp_claiming(11_500, 11_500), "BMP"),
        ] {
            let size = decoded_size(&bomb).unwrap();
            assert_eq!((size.width, size.height), (11_500, 11_500), "{name}");
            match decode_within(&bomb, true, budget) {
                Err(ImageError::OverBudget { work, needed, .. }) => {
                    assert_eq!(work, format!("decoding image 11500×11500 ({name})"));
                    assert!(needed >= rgb_bytes(11_500, 11_500));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let err = decode_within(&jpeg_claiming(20_000, 100), true, u64::MAX).unwrap_err();
        assert!(err.to_string().contains("larger than 16384"), "{err}");
    }

    #[test]
    fn the_budget_message_states_size_and_budget() {
        let err = decode_within(&encode(200, 100, image::ImageFormat::Png), false, 1000);
        let text = err.unwrap_err().to_string();
        assert_eq!(
            text,
            "decoding image 200×100 (PNG) would need 58.6 KiB; the budget is 1000 bytes"
        );
        assert!(decode_within(&encode(200, 100, image::ImageFormat::Png), false, 1 << 20).is_ok());
    }

    #[test]
    fn gif_is_not_a_supported_format() {
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
        assert!(matches!(
            decoded_size(&gif),
            Err(ImageError::UnsupportedFormat(_))
        ));
    }

    #[test]
    fn progressive_jpegs_are_told_from_baseline_ones() {
        assert!(!jpeg_is_progressive(&encode(
            8,
            8,
            image::ImageFormat::Jpeg
        )));
        // SOI, a 4-byte APP0, then SOF2.
        let progressive = [0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC2, 0, 11];
        assert!(jpeg_is_progressive(&progressive));
        assert!(jpeg_is_progressive(&[0xFF, 0xD8, 0x00]));
    }

    #[test]
    fn costs_are_known_before_the_work() {
        let img = Image::decode(&png(16, 16), false).unwrap();
        assert_eq!(img.crop_bytes(4, 4).unwrap(), 48);
        assert!(img.resize_bytes(16_384, 16_384).unwrap() >= rgb_bytes(16_384, 16_384));
        assert!(img.letterbox_bytes(100, 50).unwrap() >= rgb_bytes(100, 50));
        assert!(img.resize_bytes(0, 5).is_err());
        let options = TensorOptions {
            name: "x".into(),
            layout: Layout::Nchw,
            channels: Channels::Gray,
            element_type: ElementType::F32,
            scale: 1.0,
            mean: vec![],
            std: vec![],
        };
        assert_eq!(img.tensor_bytes(&options), 16 * 16 * 4);
        let tensor = img.to_tensor(&options).unwrap();
        assert_eq!(tensor.byte_len() as u64, img.tensor_bytes(&options));
    }

    #[test]
    fn crop_outside_the_image_is_an_error() {
        let img = Image::decode(&png(10, 10), false).unwrap();
        assert!(img.crop(5, 5, 6, 1).is_err());
        assert_eq!(img.crop(5, 5, 5, 5).unwrap().width(), 5);
    }
}
