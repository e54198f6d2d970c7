//! Label Studio's brush RLE: the bit-packed run-length format of
//! `@thi.ng/rle-pack` that Label Studio's brush tool decodes, written the way
//! `label_studio_converter.brush.encode_rle` writes it (word size 8, run
//! length fields of 3, 4, 8 and 16 bits), so masks are byte-for-byte what the
//! Python tooling produces.
//!
//! Layout: a 32-bit value count, 5 bits `word size - 1`, four 4-bit
//! `run field size - 1`; then per run a 1-bit flag (1 = repeat, 0 = literals),
//! a 2-bit field-size index, `count - 1` in that many bits, and the value(s).
//! The stream is zero-padded to whole bytes (a whole zero byte when already
//! aligned, as the converter does).
//!
//! ```
//! use hook_sdk::contours::Mask;
//! use hook_sdk::rle;
//!
//! let mut mask = Mask::new(3, 2);
//! mask.set(1, 0, true);
//! let bytes = rle::encode_mask(&mask);
//! let rgba = rle::decode(&bytes)?;
//! assert_eq!(rgba.len(), 3 * 2 * 4);
//! assert_eq!(&rgba[4..8], &[255; 4]); // pixel (1, 0), all four channels
//! # Ok::<(), hook_sdk::HookError>(())
//! ```

use crate::contours::Mask;
use crate::error::HookError;

/// Run field sizes in bits, as the converter's defaults.
const RUN_BITS: [u32; 4] = [3, 4, 8, 16];
const WORD_BITS: u32 = 8;

struct BitWriter {
    bytes: Vec<u8>,
    bits: u64,
}

impl BitWriter {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            bits: 0,
        }
    }

    /// Appends the low `n` bits of `value`, most significant first.
    fn write(&mut self, value: u32, n: u32) {
        for i in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= bit << (7 - (self.bits % 8) as u8);
            }
            self.bits += 1;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        // The converter always appends 8 - len % 8 zero bits: a full byte when aligned.
        if self.bits.is_multiple_of(8) {
            self.bytes.push(0);
        }
        self.bytes
    }
}

/// Encodes `len` values given as runs of `(length, value)`.
fn encode_runs(len: u32, runs: impl Iterator<Item = (u32, u8)>) -> Vec<u8> {
    let mut w = BitWriter::new();
    w.write(len, 32);
    w.write(WORD_BITS - 1, 5);
    for bits in RUN_BITS {
        w.write(bits - 1, 4);
    }
    for (mut length, value) in runs {
        if length == 1 {
            // A literal block of one value.
            w.write(0, 1);
            w.write(0, 2);
            w.write(0, RUN_BITS[0]);
            w.write(u32::from(value), WORD_BITS);
            continue;
        }
        // Runs longer than the widest field are split into 65,536-long pieces.
        while length > 1 << 16 {
            w.write(1, 1);
            w.write(3, 2);
            w.write((1 << 16) - 1, 16);
            w.write(u32::from(value), WORD_BITS);
            length -= 1 << 16;
        }
        let index = match length {
            0..=8 => 0,
            9..=16 => 1,
            17..=256 => 2,
            _ => 3,
        };
        w.write(1, 1);
        w.write(index as u32, 2);
        w.write(length - 1, RUN_BITS[index]);
        w.write(u32::from(value), WORD_BITS);
    }
    w.finish()
}

/// Encodes a flat array of bytes (`encode_rle`).
pub fn encode(values: &[u8]) -> Vec<u8> {
    let mut runs = Vec::new();
    for &v in values {
        match runs.last_mut() {
            Some((n, last)) if *last == v => *n += 1,
            _ => runs.push((1u32, v)),
        }
    }
    encode_runs(values.len() as u32, runs.into_iter())
}

/// Encodes a mask as Label Studio's brush value: every pixel as four equal
/// RGBA bytes, 255 where set (`mask2rle(mask * 255)`). The mask must have the
/// original image's size.
pub fn encode_mask(mask: &Mask) -> Vec<u8> {
    let mut runs: Vec<(u32, u8)> = Vec::new();
    for &set in mask.as_slice() {
        let v = if set { 255 } else { 0 };
        match runs.last_mut() {
            // Four channels per pixel: runs are four times the pixel runs.
            Some((n, last)) if *last == v => *n += 4,
            _ => runs.push((4, v)),
        }
    }
    encode_runs((mask.as_slice().len() * 4) as u32, runs.into_iter())
}

/// Decodes Label Studio RLE into its values (RGBA bytes for brush masks),
/// e.g. to read a brush stroke from the interactive context.
pub fn decode(rle: &[u8]) -> Result<Vec<u8>, HookError> {
    let mut r = BitReader { bytes: rle, pos: 0 };
    let count = r.read(32)? as usize;
    let word = r.read(5)? + 1;
    let mut sizes = [0u32; 4];
    for s in &mut sizes {
        *s = r.read(4)? + 1;
    }
    // Each run takes at least 1 + 2 + 1 + word bits, so a short stream cannot
    // claim an enormous count without failing first; still cap the allocation.
    let mut out = Vec::with_capacity(count.min(rle.len().saturating_mul(8 * 65_536)));
    while out.len() < count {
        let repeat = r.read(1)? == 1;
        let index = r.read(2)? as usize;
        let n = r.read(sizes[index])? as usize + 1;
        let n = n.min(count - out.len());
        if repeat {
            let v = r.read(word)? as u8;
            out.resize(out.len() + n, v);
        } else {
            for _ in 0..n {
                out.push(r.read(word)? as u8);
            }
        }
    }
    Ok(out)
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, n: u32) -> Result<u32, HookError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self
                .bytes
                .get(self.pos / 8)
                .ok_or_else(|| HookError::bad_input("brush RLE ends early"))?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The converter's output for `encode_rle([0]*8 + [255]*4)`, worked out
    /// bit by bit: header 0000…1100 (12) 00111 0010 0011 0111 1111, then
    /// run 1|00|111|00000000, run 1|00|011|11111111, then padding.
    #[test]
    fn matches_the_converter_bit_for_bit() {
        let mut values = vec![0u8; 8];
        values.extend([255u8; 4]);
        let bits = concat!(
            "00000000000000000000000000001100", // 12 values
            "00111",                            // word size 8
            "0010",
            "0011",
            "0111",
            "1111", // run fields 3, 4, 8, 16
            "1",
            "00",
            "111",
            "00000000", // 8 × 0
            "1",
            "00",
            "011",
            "11111111", // 4 × 255
        );
        let mut padded = bits.to_owned();
        padded.push_str(&"0".repeat(8 - bits.len() % 8));
        let expected: Vec<u8> = padded
            .as_bytes()
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |acc, b| (acc << 1) | (b - b'0')))
            .collect();
        assert_eq!(encode(&values), expected);
    }

    #[test]
    fn single_values_are_literal_blocks() {
        // header (53 bits) + 3 literals × 14 bits = 95 bits → 12 bytes.
        let out = encode(&[1, 2, 3]);
        assert_eq!(out.len(), 12);
        assert_eq!(decode(&out).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn aligned_streams_get_a_whole_zero_byte_like_the_converter() {
        // header 53 bits + a literal (14) + a 2-run (14) + a 9-run (15) = 96 bits = 12 bytes.
        let mut values = vec![7, 9, 9];
        values.extend([3; 9]);
        let out = encode(&values);
        assert_eq!(out.len(), 13);
        assert_eq!(out[12], 0);
        assert_eq!(decode(&out).unwrap(), values);
    }

    #[test]
    fn every_run_field_size_round_trips() {
        for len in [2usize, 8, 9, 16, 17, 256, 257, 65_536, 65_537, 200_000] {
            let mut values = vec![5u8; len];
            values.push(6);
            assert_eq!(decode(&encode(&values)).unwrap(), values, "run of {len}");
        }
    }

    #[test]
    fn masks_become_rgba_runs() {
        let mut mask = Mask::new(4, 3);
        mask.set(1, 1, true);
        mask.set(2, 1, true);
        let rgba = decode(&encode_mask(&mask)).unwrap();
        let expected: Vec<u8> = mask
            .as_slice()
            .iter()
            .flat_map(|&b| [if b { 255 } else { 0 }; 4])
            .collect();
        assert_eq!(rgba, expected);
        // The same bytes as encoding the expanded array directly.
        assert_eq!(encode_mask(&mask), encode(&expected));
    }

    #[test]
    fn truncated_rle_is_an_error() {
        let out = encode(&[1, 2, 3, 4, 5]);
        assert!(decode(&out[..8]).is_err());
        assert!(decode(&[]).is_err());
    }
}
