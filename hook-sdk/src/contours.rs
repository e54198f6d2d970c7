//! Masks and probability maps to polygons: threshold a map into a [`Mask`],
//! optionally dilate it, split it into 8-connected [`Blob`]s and trace each
//! blob's outer boundary along pixel edges (so the polygon encloses exactly
//! the blob's pixels; holes are ignored, as Label Studio polygons have none).
//! [`crate::polygon::simplify`] then drops the staircase vertices.
//!
//! ```
//! use hook_sdk::contours::Mask;
//! use hook_sdk::polygon::area;
//!
//! // A 6×4 map with one 3×2 blob of high probability.
//! let mut probs = vec![0.0f32; 24];
//! for y in 1..3 { for x in 2..5 { probs[y * 6 + x] = 0.9; } }
//! let mask = Mask::from_threshold(&probs, 6, 4, 0.5)?;
//! let blobs = mask.blobs();
//! assert_eq!(blobs.len(), 1);
//! assert_eq!(blobs[0].contour.len(), 4);          // the rectangle's corners
//! assert_eq!(area(&blobs[0].contour), 6.0);       // exactly its 6 pixels
//! assert!((blobs[0].mean(&probs) - 0.9).abs() < 1e-6);
//! # Ok::<(), hook_sdk::HookError>(())
//! ```

use std::collections::VecDeque;

use crate::error::HookError;
use crate::polygon::Point;

/// A binary image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    width: usize,
    height: usize,
    data: Vec<bool>,
}

/// One 8-connected group of set pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    /// Outer boundary along pixel edges, in pixel coordinates (a pixel
    /// `(x, y)` covers `x..x+1`, `y..y+1`); only the corners are listed.
    pub contour: Vec<Point>,
    /// Row-major indices of the blob's pixels.
    pub pixels: Vec<usize>,
}

impl Blob {
    /// Mean of `values` (a map the size of the mask) over the blob's pixels:
    /// the usual confidence of a segment.
    pub fn mean(&self, values: &[f32]) -> f32 {
        let (sum, n) = self
            .pixels
            .iter()
            .filter_map(|&i| values.get(i))
            .fold((0.0f64, 0usize), |(s, n), &v| (s + f64::from(v), n + 1));
        if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
    }
}

impl Mask {
    /// An empty mask.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![false; width * height],
        }
    }

    /// Pixels where `values > threshold`; `values` is `width × height`, row-major.
    pub fn from_threshold(
        values: &[f32],
        width: usize,
        height: usize,
        threshold: f32,
    ) -> Result<Self, HookError> {
        if width.checked_mul(height) != Some(values.len()) {
            return Err(HookError::bad_config(format_args!(
                "a {width}×{height} map needs {} values, got {}",
                width.saturating_mul(height),
                values.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data: values.iter().map(|&v| v > threshold).collect(),
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Whether `(x, y)` is set; `false` outside the mask.
    pub fn get(&self, x: i64, y: i64) -> bool {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return false;
        }
        self.data[y as usize * self.width + x as usize]
    }

    /// Sets `(x, y)`; ignored outside the mask.
    pub fn set(&mut self, x: usize, y: usize, value: bool) {
        if x < self.width && y < self.height {
            self.data[y * self.width + x] = value;
        }
    }

    /// The pixels, row-major.
    pub fn as_slice(&self) -> &[bool] {
        &self.data
    }

    /// Number of set pixels.
    pub fn count(&self) -> usize {
        self.data.iter().filter(|&&b| b).count()
    }

    /// Dilation with a `kernel_width × kernel_height` rectangle anchored at
    /// its centre (`k / 2`), as OpenCV's `dilate`: a 2×2 kernel grows blobs by
    /// one pixel to the right and down.
    pub fn dilate(&self, kernel_width: usize, kernel_height: usize) -> Mask {
        let (ax, ay) = ((kernel_width / 2) as i64, (kernel_height / 2) as i64);
        // Separable: max over the row window, then over the column window.
        let mut rows = Mask::new(self.width, self.height);
        for y in 0..self.height as i64 {
            for x in 0..self.width as i64 {
                let hit = (0..kernel_width as i64).any(|k| self.get(x + k - ax, y));
                rows.data[y as usize * self.width + x as usize] = hit;
            }
        }
        let mut out = Mask::new(self.width, self.height);
        for y in 0..self.height as i64 {
            for x in 0..self.width as i64 {
                let hit = (0..kernel_height as i64).any(|k| rows.get(x, y + k - ay));
                out.data[y as usize * self.width + x as usize] = hit;
            }
        }
        out
    }

    /// The 8-connected blobs, in raster order of their top-left pixel, each
    /// with its traced outer contour.
    pub fn blobs(&self) -> Vec<Blob> {
        let mut label = vec![false; self.data.len()];
        let mut blobs = Vec::new();
        let mut queue = VecDeque::new();
        for start in 0..self.data.len() {
            if !self.data[start] || label[start] {
                continue;
            }
            // Flood fill (breadth first: no recursion depth to exhaust).
            let mut pixels = Vec::new();
            label[start] = true;
            queue.push_back(start);
            while let Some(i) = queue.pop_front() {
                pixels.push(i);
                let (x, y) = ((i % self.width) as i64, (i / self.width) as i64);
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (nx, ny) = (x + dx, y + dy);
                        if self.get(nx, ny) {
                            let j = ny as usize * self.width + nx as usize;
                            if !label[j] {
                                label[j] = true;
                                queue.push_back(j);
                            }
                        }
                    }
                }
            }
            let (sx, sy) = ((start % self.width) as i64, (start / self.width) as i64);
            blobs.push(Blob {
                contour: self.trace_outer(sx, sy),
                pixels,
            });
        }
        blobs
    }

    /// Traces the outer boundary of the blob whose first pixel in raster
    /// order is `(sx, sy)`, walking along pixel edges with the blob on the
    /// right-hand side (y grows downwards), and returns its corners.
    fn trace_outer(&self, sx: i64, sy: i64) -> Vec<Point> {
        // Directions: east, south, west, north.
        const DIRS: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];
        // The pixel on one side of the edge from vertex (vx, vy) along
        // direction d: `right` = the side the blob is on.
        let pixel_beside = |vx: i64, vy: i64, d: usize, right: bool| -> bool {
            let (dx, dy) = DIRS[d];
            let (sx, sy) = if right {
                DIRS[(d + 1) % 4]
            } else {
                DIRS[(d + 3) % 4]
            };
            let xs = [vx, vx + dx, vx + sx, vx + dx + sx];
            let ys = [vy, vy + dy, vy + sy, vy + dy + sy];
            let (px, py) = (
                xs.iter().copied().min().unwrap_or(vx),
                ys.iter().copied().min().unwrap_or(vy),
            );
            self.get(px, py)
        };
        // The top edge of the first pixel, heading east, is on the outer boundary.
        let (start, start_dir) = ((sx, sy), 0usize);
        let (mut v, mut d) = (start, start_dir);
        let mut corners = vec![Point::new(sx as f64, sy as f64)];
        // Each edge is walked at most once per side, so this bounds the loop
        // even if the mask were inconsistent.
        let limit = 4 * (self.width + 1) * (self.height + 1);
        for _ in 0..limit {
            let (dx, dy) = DIRS[d];
            v = (v.0 + dx, v.1 + dy);
            // 8-connectivity: a blob pixel ahead-left joins the blob even
            // diagonally, so turn towards it first.
            let next = if pixel_beside(v.0, v.1, d, false) {
                (d + 3) % 4
            } else if pixel_beside(v.0, v.1, d, true) {
                d
            } else {
                (d + 1) % 4
            };
            if v == start && next == start_dir {
                break;
            }
            if next != d {
                corners.push(Point::new(v.0 as f64, v.1 as f64));
            }
            d = next;
        }
        corners
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::polygon::area;

    fn mask(rows: &[&str]) -> Mask {
        let width = rows[0].len();
        let values: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| if c == '#' { 1.0 } else { 0.0 }))
            .collect();
        Mask::from_threshold(&values, width, rows.len(), 0.5).unwrap()
    }

    #[test]
    fn a_single_pixel_is_a_unit_square() {
        let blobs = mask(&["...", ".#.", "..."]).blobs();
        assert_eq!(
            blobs[0].contour,
            [(1., 1.), (2., 1.), (2., 2.), (1., 2.)].map(|(x, y)| Point::new(x, y))
        );
    }

    #[test]
    fn an_l_shape_has_six_corners_and_its_pixel_area() {
        let m = mask(&["#..", "#..", "###"]);
        let blobs = m.blobs();
        assert_eq!(blobs.len(), 1);
        assert_eq!(blobs[0].contour.len(), 6);
        assert_eq!(area(&blobs[0].contour), 5.0);
        assert_eq!(blobs[0].pixels.len(), 5);
    }

    #[test]
    fn diagonal_neighbours_are_one_blob() {
        let blobs = mask(&["#..", ".#.", "..#"]).blobs();
        assert_eq!(blobs.len(), 1);
        assert_eq!(area(&blobs[0].contour), 3.0);
        // Pinch points are visited twice: 3 squares × 4 corners.
        assert_eq!(blobs[0].contour.len(), 12);
    }

    #[test]
    fn holes_are_ignored_and_separate_blobs_are_separate() {
        let blobs = mask(&["###..", "#.#..", "###.#"]).blobs();
        assert_eq!(blobs.len(), 2);
        assert_eq!(
            area(&blobs[0].contour),
            9.0,
            "outer outline encloses the hole"
        );
        assert_eq!(blobs[0].pixels.len(), 8);
        assert_eq!(area(&blobs[1].contour), 1.0);
    }

    #[test]
    fn blobs_touching_the_border_are_closed() {
        let blobs = mask(&["##", "##"]).blobs();
        assert_eq!(area(&blobs[0].contour), 4.0);
    }

    #[test]
    fn a_concave_u_is_traced_around_its_opening() {
        let blobs = mask(&["#.#", "#.#", "###"]).blobs();
        assert_eq!(blobs[0].contour.len(), 8);
        assert_eq!(area(&blobs[0].contour), 7.0);
    }

    #[test]
    fn dilate_two_by_two_grows_right_and_down_like_opencv() {
        let d = mask(&["#..", "...", "..."]).dilate(2, 2);
        assert_eq!(d, mask(&["##.", "##.", "..."]));
        assert_eq!(mask(&[".#.", "...", "..."]).dilate(3, 3).count(), 6);
    }

    #[test]
    fn mismatched_map_size_is_an_error() {
        assert!(Mask::from_threshold(&[0.0; 5], 2, 2, 0.5).is_err());
    }

    #[test]
    fn blob_mean_averages_only_its_pixels() {
        let values = [0.8, 0.0, 0.6, 0.0];
        let m = Mask::from_threshold(&values, 2, 2, 0.5).unwrap();
        assert!((m.blobs()[0].mean(&values) - 0.7).abs() < 1e-6);
    }
}
