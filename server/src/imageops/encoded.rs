//! Images known by their header until their pixels are needed, so that the
//! first resize can decide how much of a large JPEG to decode.
//!
//! A JPEG stores 8×8 blocks of frequencies; keeping only the low ones gives
//! the picture at 1/2, 1/4 or 1/8 of its size for much less work (libjpeg's
//! DCT scaling, Pillow's `draft`). Entropy decoding still reads the whole
//! file, so this pays for large photos only: on a 12 MP camera JPEG a
//! quarter-size decode takes half the time of a full one, while at 1 MP a
//! full decode is as fast (`cargo bench --bench preprocess`). The reduced
//! image keeps at least [`REDUCING_GAP`] times the target size, so the
//! resampling filter, not the block averaging, decides what the model sees
//! (Pillow's `thumbnail` does the same).

use std::io::Cursor;

use bytes::Bytes;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage};

use super::{
    DecodedSize, Filter, Image, ImageError, MAX_DECODE_BYTES, Transform, Window, check_dimensions,
    decode_within, gray_to_rgb, measure, open_header, swaps_axes,
};

/// A reduced decode keeps at least this many times the target size on each
/// side.
pub const REDUCING_GAP: u32 = 2;
/// JPEGs with fewer pixels are always decoded in full: below this a full
/// decode is as fast as a reduced one (measured at 1 MP and 3 MP).
pub const MIN_REDUCED_PIXELS: u64 = 2_000_000;

/// An image whose header has been read and whose pixels are not decoded
/// yet. Its width and height are the upright ones (after EXIF orientation
/// when that is applied).
#[derive(Debug, Clone)]
pub struct EncodedImage {
    bytes: Bytes,
    size: DecodedSize,
    format: ImageFormat,
    orientation: Orientation,
    apply_orientation: bool,
}

impl EncodedImage {
    /// Reads the header of `bytes`: format, size and orientation. No pixel
    /// memory is allocated; an unsupported or garbled header, or one larger
    /// than [`super::MAX_DIMENSION`] on a side, is an error here, a corrupt
    /// body only when the pixels are decoded.
    pub fn open(bytes: Bytes, apply_orientation: bool) -> Result<Self, ImageError> {
        let (format, mut decoder) = open_header(&bytes, MAX_DECODE_BYTES)?;
        let size = measure(format, &bytes, &mut decoder);
        check_dimensions(&size)?;
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        drop(decoder);
        Ok(Self {
            bytes,
            size,
            format,
            orientation,
            apply_orientation,
        })
    }

    /// What decoding in full costs, from the header.
    pub fn size(&self) -> &DecodedSize {
        &self.size
    }

    /// Bytes of the encoded file.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Upright width.
    pub fn width(&self) -> u32 {
        self.upright().0
    }

    /// Upright height.
    pub fn height(&self) -> u32 {
        self.upright().1
    }

    fn upright(&self) -> (u32, u32) {
        let (w, h) = (self.size.width, self.size.height);
        if self.apply_orientation && swaps_axes(self.orientation) {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// Decodes every pixel into at most `max_bytes` (see [`decode_within`]).
    pub fn decode(&self, max_bytes: u64) -> Result<Image, ImageError> {
        decode_within(&self.bytes, self.apply_orientation, max_bytes)
    }

    /// By how much a decode for a `width`×`height` target may shrink the
    /// image: 1 (full size), 2, 4 or 8. Only large JPEGs shrink, and never
    /// below [`REDUCING_GAP`] times the target.
    pub fn reduction_for(&self, width: u32, height: u32) -> u32 {
        if self.format != ImageFormat::Jpeg || self.size.pixels() < MIN_REDUCED_PIXELS {
            return 1;
        }
        let (w, h) = self.upright();
        let keeps = |side: u32, target: u32, by: u32| {
            u64::from(side.div_ceil(by)) >= u64::from(target) * u64::from(REDUCING_GAP)
        };
        [8, 4, 2]
            .into_iter()
            .find(|&by| keeps(w, width, by) && keeps(h, height, by))
            .unwrap_or(1)
    }

    /// Decodes at the size [`EncodedImage::reduction_for`] allows for a
    /// `width`×`height` target: at least that large, upright.
    pub fn decode_for(&self, width: u32, height: u32, max_bytes: u64) -> Result<Image, ImageError> {
        match self.reduction_for(width, height) {
            1 => self.decode(max_bytes),
            by => match self.decode_jpeg_reduced(by, max_bytes)? {
                Some(image) => Ok(image),
                None => self.decode(max_bytes),
            },
        }
    }

    /// The image resized to `width`×`height`, decoded no larger than it
    /// needs to be.
    pub fn resize(
        &self,
        width: u32,
        height: u32,
        filter: Filter,
        max_bytes: u64,
    ) -> Result<Image, ImageError> {
        self.resize_window(
            width,
            height,
            Window::whole(width, height),
            filter,
            max_bytes,
        )
    }

    /// [`Image::resize_window`] of the image decoded no larger than a
    /// `width`×`height` target needs.
    pub fn resize_window(
        &self,
        width: u32,
        height: u32,
        window: Window,
        filter: Filter,
        max_bytes: u64,
    ) -> Result<Image, ImageError> {
        self.decode_for(width, height, max_bytes)?
            .resize_window(width, height, window, filter)
    }

    /// [`Image::stretch`] with the transform of the full-size image.
    pub fn stretch(
        &self,
        width: u32,
        height: u32,
        max_bytes: u64,
    ) -> Result<(Image, Transform), ImageError> {
        let resized = self.resize(width, height, Filter::Bilinear, max_bytes)?;
        Ok((
            resized,
            Transform::stretch(self.width(), self.height(), width, height),
        ))
    }

    /// [`Image::letterbox`] with the inner size and transform of the
    /// full-size image.
    pub fn letterbox(
        &self,
        width: u32,
        height: u32,
        fill: u8,
        max_bytes: u64,
    ) -> Result<(Image, Transform), ImageError> {
        let inner = super::letterbox_inner((self.width(), self.height()), width, height);
        let decoded = self.decode_for(inner.0, inner.1, max_bytes)?;
        decoded.letterbox_inner_size(inner, (self.width(), self.height()), width, height, fill)
    }

    /// A JPEG decoded at 1/`by` of its size; `None` for pixel formats the
    /// full decoder handles better (CMYK, 16-bit).
    fn decode_jpeg_reduced(&self, by: u32, max_bytes: u64) -> Result<Option<Image>, ImageError> {
        let failed = |e: jpeg_decoder::Error| ImageError::DecodeFailed(e.to_string());
        let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(&self.bytes[..]));
        decoder.set_max_decoding_buffer_size(usize::try_from(max_bytes).unwrap_or(usize::MAX));
        decoder.read_info().map_err(failed)?;
        let Some(info) = decoder.info() else {
            return Ok(None);
        };
        let by = u16::try_from(by).unwrap_or(1);
        let (w, h) = decoder
            .scale(info.width.div_ceil(by), info.height.div_ceil(by))
            .map_err(failed)?;
        let pixels = decoder.decode().map_err(failed)?;
        let (w, h) = (u32::from(w), u32::from(h));
        let rgb = match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(w, h, pixels),
            jpeg_decoder::PixelFormat::L8 => RgbImage::from_raw(w, h, gray_to_rgb(&pixels)),
            _ => None,
        };
        let Some(rgb) = rgb else {
            return Ok(None);
        };
        if !self.apply_orientation || self.orientation == Orientation::NoTransforms {
            return Ok(Some(Image::from_rgb(rgb)));
        }
        let mut upright = DynamicImage::ImageRgb8(rgb);
        upright.apply_orientation(self.orientation);
        Ok(Some(Image::from_rgb(upright.into_rgb8())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageops::Image;

    /// A `width`×`height` JPEG with detail at every scale (gradients, a
    /// checkerboard, a diagonal), and EXIF `orientation` when it is not 1.
    fn jpeg(width: u32, height: u32, orientation: u16) -> Bytes {
        let pixels = RgbImage::from_fn(width, height, |x, y| {
            let check = if (x / 37 + y / 23) % 2 == 0 { 60 } else { 0 };
            let diagonal = if (x + 2 * y) % 97 < 8 { 120 } else { 0 };
            image::Rgb([
                ((x * 255 / width) as u8).saturating_add(check),
                ((y * 255 / height) as u8).saturating_add(diagonal),
                (((x + y) * 128 / (width + height)) as u8).saturating_add(check),
            ])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&pixels)
            .expect("encode");
        if orientation != 1 {
            out.splice(2..2, exif_segment(orientation));
        }
        Bytes::from(out)
    }

    /// An APP1 segment holding a big-endian TIFF with one Orientation tag.
    fn exif_segment(orientation: u16) -> Vec<u8> {
        let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // padding, no next IFD
        let mut segment = vec![0xFF, 0xE1];
        segment.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
        segment.extend_from_slice(b"Exif\0\0");
        segment.extend_from_slice(&tiff);
        segment
    }

    /// Mean and largest absolute difference of two same-sized images.
    fn difference(a: &Image, b: &Image) -> (f64, u8) {
        assert_eq!((a.width(), a.height()), (b.width(), b.height()));
        let (a, b) = (a.rgb().as_raw(), b.rgb().as_raw());
        let max = a
            .iter()
            .zip(b)
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap_or(0);
        let sum: u64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        (sum as f64 / a.len() as f64, max)
    }

    #[test]
    fn only_large_jpegs_are_decoded_reduced_and_never_below_twice_the_target() {
        let large = EncodedImage::open(jpeg(2400, 1800, 1), true).unwrap();
        assert_eq!((large.width(), large.height()), (2400, 1800));
        // 341×256 needs ≥ 682×512: 1/2 gives 1200×900, 1/4 only 600×450.
        assert_eq!(large.reduction_for(341, 256), 2);
        assert_eq!(large.reduction_for(150, 112), 8);
        assert_eq!(large.reduction_for(300, 225), 4);
        assert_eq!(large.reduction_for(2400, 1800), 1);
        let small = EncodedImage::open(jpeg(1200, 900, 1), true).unwrap();
        assert_eq!(
            small.reduction_for(32, 32),
            1,
            "under 2 MP: decoded in full"
        );
        let mut png = std::io::Cursor::new(Vec::new());
        RgbImage::new(2400, 1800)
            .write_to(&mut png, ImageFormat::Png)
            .unwrap();
        let png = EncodedImage::open(Bytes::from(png.into_inner()), true).unwrap();
        assert_eq!(png.reduction_for(32, 32), 1, "only JPEG has DCT scaling");
    }

    #[test]
    fn a_reduced_decode_resizes_to_nearly_what_a_full_decode_does() {
        for orientation in [1, 6, 3] {
            let bytes = jpeg(2400, 1800, orientation);
            let encoded = EncodedImage::open(bytes.clone(), true).unwrap();
            let full = Image::decode(&bytes, true).unwrap();
            assert_eq!(
                (encoded.width(), encoded.height()),
                (full.width(), full.height()),
                "orientation {orientation}: the header tells the upright size"
            );
            let (w, h) = (encoded.width() / 8, encoded.height() / 8);
            assert_eq!(encoded.reduction_for(w, h), 4);
            let fast = encoded
                .resize(w, h, Filter::Lanczos3, MAX_DECODE_BYTES)
                .unwrap();
            let reference = full.resize(w, h, Filter::Lanczos3).unwrap();
            let (mean, max) = difference(&fast, &reference);
            assert!(
                mean < 1.5 && max < 40,
                "orientation {orientation}: mean {mean:.2}, max {max} levels"
            );
        }
    }

    #[test]
    fn reduced_letterbox_and_stretch_report_the_full_size_transform() {
        let bytes = jpeg(2400, 1800, 6);
        let encoded = EncodedImage::open(bytes.clone(), true).unwrap();
        let full = Image::decode(&bytes, true).unwrap();
        let (boxed, transform) = encoded.letterbox(160, 160, 0, MAX_DECODE_BYTES).unwrap();
        let (reference, expected) = full.letterbox(160, 160, 0).unwrap();
        assert_eq!(transform, expected);
        assert_eq!(transform.original_width, 1800);
        let (mean, _) = difference(&boxed, &reference);
        assert!(mean < 1.5, "mean {mean:.2} levels");
        let (_, transform) = encoded.stretch(200, 100, MAX_DECODE_BYTES).unwrap();
        assert_eq!(transform, full.stretch(200, 100).unwrap().1);
    }

    #[test]
    fn gray_images_decode_to_equal_channels() {
        let gray = image::GrayImage::from_fn(5, 3, |x, y| image::Luma([(x * 40 + y) as u8]));
        let mut png = std::io::Cursor::new(Vec::new());
        gray.write_to(&mut png, ImageFormat::Png).unwrap();
        let decoded = Image::decode(png.get_ref(), false).unwrap();
        assert_eq!(decoded.rgb(), &DynamicImage::ImageLuma8(gray).into_rgb8());
    }
}
