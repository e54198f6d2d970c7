//! Polygons in pixels: area, perimeter, Douglas–Peucker simplification,
//! outward offset ("unclip", as text detectors grow their shrunken kernels),
//! convex hull, minimum-area rectangle, and mapping back to the original
//! image and Label Studio percentages.

use crate::bindings::pre::cls::hooks::types::ImageTransform;
use crate::image::ImageSize;

/// A point in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Horizontal position, growing to the right.
    pub x: f64,
    /// Vertical position, growing downwards.
    pub y: f64,
}

impl Point {
    /// A point.
    pub fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }

    fn sub(self, o: Point) -> Point {
        Point::new(self.x - o.x, self.y - o.y)
    }

    fn dot(self, o: Point) -> f64 {
        self.x * o.x + self.y * o.y
    }

    fn cross(self, o: Point) -> f64 {
        self.x * o.y - self.y * o.x
    }

    fn norm(self) -> f64 {
        self.dot(self).sqrt()
    }

    /// Maps a point in model pixels to original pixels, clipped to the image.
    pub fn to_original(self, transform: &ImageTransform) -> Point {
        let (x, y) = transform.to_original(self.x as f32, self.y as f32);
        Point::new(
            f64::from(x).clamp(0.0, f64::from(transform.original_width)),
            f64::from(y).clamp(0.0, f64::from(transform.original_height)),
        )
    }

    /// The point (in original pixels) as `[x, y]` percentages of `size`, clipped to 0–100.
    pub fn to_percent(self, size: ImageSize) -> [f64; 2] {
        [
            (self.x / f64::from(size.width.max(1)) * 100.0).clamp(0.0, 100.0),
            (self.y / f64::from(size.height.max(1)) * 100.0).clamp(0.0, 100.0),
        ]
    }
}

/// Signed area (shoelace); the sign tells the winding.
pub fn signed_area(points: &[Point]) -> f64 {
    let n = points.len();
    (0..n)
        .map(|i| points[i].cross(points[(i + 1) % n]))
        .sum::<f64>()
        / 2.0
}

/// Area of a simple polygon.
///
/// ```
/// use hook_sdk::polygon::{area, perimeter, Point};
/// let square = [Point::new(0.0, 0.0), Point::new(4.0, 0.0), Point::new(4.0, 4.0), Point::new(0.0, 4.0)];
/// assert_eq!((area(&square), perimeter(&square)), (16.0, 16.0));
/// ```
pub fn area(points: &[Point]) -> f64 {
    signed_area(points).abs()
}

/// Length of the closed outline.
pub fn perimeter(points: &[Point]) -> f64 {
    let n = points.len();
    if n < 2 {
        return 0.0;
    }
    (0..n)
        .map(|i| points[(i + 1) % n].sub(points[i]).norm())
        .sum()
}

/// Distance from `p` to the segment `a`–`b`.
fn segment_distance(p: Point, a: Point, b: Point) -> f64 {
    let ab = b.sub(a);
    let len2 = ab.dot(ab);
    if len2 == 0.0 {
        return p.sub(a).norm();
    }
    let t = (p.sub(a).dot(ab) / len2).clamp(0.0, 1.0);
    p.sub(Point::new(a.x + t * ab.x, a.y + t * ab.y)).norm()
}

/// Douglas–Peucker simplification of a closed polygon: every dropped vertex
/// lies within `epsilon` of the result. The outline is split at the vertex
/// farthest from the first one, and both halves are simplified as open
/// chains (as OpenCV's `approxPolyDP` does for closed curves).
///
/// ```
/// use hook_sdk::polygon::{simplify, Point};
/// // A square with a redundant point on each side.
/// let pts: Vec<Point> = [(0., 0.), (5., 0.1), (10., 0.), (10., 10.), (5., 10.), (0., 10.)]
///     .iter().map(|&(x, y)| Point::new(x, y)).collect();
/// assert_eq!(simplify(&pts, 0.5).len(), 4);
/// ```
pub fn simplify(points: &[Point], epsilon: f64) -> Vec<Point> {
    let n = points.len();
    if n <= 3 {
        return points.to_vec();
    }
    let far = (1..n)
        .max_by(|&a, &b| {
            points[a]
                .sub(points[0])
                .norm()
                .total_cmp(&points[b].sub(points[0]).norm())
        })
        .unwrap_or(n / 2);
    let mut keep = vec![false; n + 1];
    keep[0] = true;
    keep[far] = true;
    // The closing chain runs from `far` back to the first point, index n ≡ 0.
    let at = |i: usize| points[i % n];
    let mut stack = vec![(0usize, far), (far, n)];
    // An explicit stack instead of recursion: contours can have thousands of points.
    while let Some((start, end)) = stack.pop() {
        if end <= start + 1 {
            continue;
        }
        let (a, b) = (at(start), at(end));
        let (mut worst, mut worst_d) = (start, -1.0);
        for i in start + 1..end {
            let d = segment_distance(at(i), a, b);
            if d > worst_d {
                (worst, worst_d) = (i, d);
            }
        }
        if worst_d > epsilon {
            keep[worst] = true;
            stack.push((start, worst));
            stack.push((worst, end));
        }
    }
    (0..n).filter(|&i| keep[i]).map(|i| points[i]).collect()
}

/// Drops consecutive duplicates (including last = first).
fn dedup(points: &[Point]) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::with_capacity(points.len());
    for &p in points {
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    while out.len() > 1 && out.first() == out.last() {
        out.pop();
    }
    out
}

/// Moves every edge of the polygon `distance` pixels outwards (negative:
/// inwards). Corners are mitred, bevelled where the mitre would reach beyond
/// twice the distance. Exact for convex polygons; for concave ones a large
/// distance can fold narrow notches over themselves.
///
/// ```
/// use hook_sdk::polygon::{area, offset, Point};
/// let square = [Point::new(0.0, 0.0), Point::new(4.0, 0.0), Point::new(4.0, 4.0), Point::new(0.0, 4.0)];
/// assert!((area(&offset(&square, 1.0)) - 36.0).abs() < 1e-9);
/// ```
pub fn offset(points: &[Point], distance: f64) -> Vec<Point> {
    const MITER_LIMIT: f64 = 2.0;
    let pts = dedup(points);
    let n = pts.len();
    if n < 3 || distance == 0.0 {
        return pts;
    }
    // Outward normal of an edge depends on the winding.
    let winding = if signed_area(&pts) >= 0.0 { 1.0 } else { -1.0 };
    let normal = |a: Point, b: Point| {
        let d = b.sub(a);
        let len = d.norm().max(f64::MIN_POSITIVE);
        Point::new(winding * d.y / len, -winding * d.x / len)
    };
    let mut out = Vec::with_capacity(n + 4);
    for i in 0..n {
        let (prev, cur, next) = (pts[(i + n - 1) % n], pts[i], pts[(i + 1) % n]);
        let (n1, n2) = (normal(prev, cur), normal(cur, next));
        let bisector = Point::new(n1.x + n2.x, n1.y + n2.y);
        let len = bisector.norm();
        // cos of half the turning angle; 0 for a full reversal.
        let cos_half = if len > 1e-12 {
            bisector.dot(n1) / len
        } else {
            0.0
        };
        // A corner bulging outwards in the direction of the offset.
        let convex = winding * cur.sub(prev).cross(next.sub(cur)) * distance.signum() >= 0.0;
        if cos_half > 1.0 / MITER_LIMIT {
            let reach = distance / cos_half;
            out.push(Point::new(
                cur.x + bisector.x / len * reach,
                cur.y + bisector.y / len * reach,
            ));
        } else if convex {
            out.push(Point::new(cur.x + n1.x * distance, cur.y + n1.y * distance));
            out.push(Point::new(cur.x + n2.x * distance, cur.y + n2.y * distance));
        } else if len > 1e-12 {
            // A sharp inward corner: a capped mitre keeps the outline simple.
            let reach = distance * MITER_LIMIT;
            out.push(Point::new(
                cur.x + bisector.x / len * reach,
                cur.y + bisector.y / len * reach,
            ));
        }
    }
    out
}

/// Convex hull (Andrew's monotone chain), counter-clockwise in y-up terms.
pub fn convex_hull(points: &[Point]) -> Vec<Point> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut hull: Vec<Point> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &Point>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2 {
                let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
                if b.sub(a).cross(p.sub(a)) <= 0.0 {
                    hull.pop();
                } else {
                    break;
                }
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// The smallest-area rectangle (any rotation) containing the points, as its
/// four corners, and the length of its shorter side.
///
/// ```
/// use hook_sdk::polygon::{min_area_rect, Point};
/// // A diamond: its minimal rectangle is the rotated square through its corners.
/// let diamond = [Point::new(2.0, 0.0), Point::new(4.0, 2.0), Point::new(2.0, 4.0), Point::new(0.0, 2.0)];
/// let (_, short) = min_area_rect(&diamond);
/// assert!((short - 8f64.sqrt()).abs() < 1e-9);
/// ```
pub fn min_area_rect(points: &[Point]) -> ([Point; 4], f64) {
    let hull = convex_hull(points);
    let mut best: Option<(f64, [Point; 4], f64)> = None;
    let n = hull.len();
    for i in 0..n.max(1) {
        // Rectangles flush with a hull edge include the optimum (rotating calipers).
        let (a, b) = (
            hull.get(i).copied().unwrap_or_default(),
            hull.get((i + 1) % n.max(1)).copied().unwrap_or_default(),
        );
        let d = b.sub(a);
        let len = d.norm();
        let u = if len > 0.0 {
            Point::new(d.x / len, d.y / len)
        } else {
            Point::new(1.0, 0.0)
        };
        let v = Point::new(-u.y, u.x);
        let (mut umin, mut umax, mut vmin, mut vmax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &p in &hull {
            let (pu, pv) = (p.dot(u), p.dot(v));
            (umin, umax, vmin, vmax) = (umin.min(pu), umax.max(pu), vmin.min(pv), vmax.max(pv));
        }
        if hull.is_empty() {
            (umin, umax, vmin, vmax) = (0.0, 0.0, 0.0, 0.0);
        }
        let area = (umax - umin) * (vmax - vmin);
        if best.as_ref().is_none_or(|(a, _, _)| area < *a) {
            let corner = |s: f64, t: f64| Point::new(u.x * s + v.x * t, u.y * s + v.y * t);
            let rect = [
                corner(umin, vmin),
                corner(umax, vmin),
                corner(umax, vmax),
                corner(umin, vmax),
            ];
            best = Some((area, rect, (umax - umin).min(vmax - vmin)));
        }
    }
    best.map(|(_, rect, short)| (rect, short))
        .unwrap_or_default()
}

/// Grows a polygon like DBNet's `unclip`: by `area × ratio / perimeter`
/// pixels outwards (the kernels a text detector predicts are shrunk by that
/// amount during training).
pub fn unclip(points: &[Point], ratio: f64) -> Vec<Point> {
    let length = perimeter(points);
    if length == 0.0 {
        return points.to_vec();
    }
    offset(points, area(points) * ratio / length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, f64)]) -> Vec<Point> {
        v.iter().map(|&(x, y)| Point::new(x, y)).collect()
    }

    #[test]
    fn simplify_keeps_corners_of_a_staircase_within_epsilon() {
        // A 10×10 square traced with a bump of 0.4 in the middle of each side.
        let shape = pts(&[
            (0., 0.),
            (5., -0.4),
            (10., 0.),
            (10.4, 5.),
            (10., 10.),
            (5., 10.4),
            (0., 10.),
            (-0.4, 5.),
        ]);
        assert_eq!(
            simplify(&shape, 0.5),
            pts(&[(0., 0.), (10., 0.), (10., 10.), (0., 10.)])
        );
        assert_eq!(
            simplify(&shape, 0.1).len(),
            8,
            "nothing dropped below the bump height"
        );
    }

    #[test]
    fn simplify_of_tiny_polygons_is_the_identity() {
        let tri = pts(&[(0., 0.), (1., 0.), (0., 1.)]);
        assert_eq!(simplify(&tri, 10.0), tri);
    }

    #[test]
    fn offset_grows_either_winding_outwards() {
        let cw = pts(&[(0., 0.), (0., 4.), (4., 4.), (4., 0.)]);
        let grown = offset(&cw, 1.0);
        assert!((area(&grown) - 36.0).abs() < 1e-9);
        assert!(
            grown
                .iter()
                .all(|p| p.x >= -1.0 - 1e-9 && p.x <= 5.0 + 1e-9)
        );
        assert!(
            (area(&offset(&cw, -1.0)) - 4.0).abs() < 1e-9,
            "negative distance shrinks"
        );
    }

    #[test]
    fn offset_bevels_sharp_spikes() {
        let spike = pts(&[(0., 0.), (100., 1.), (0., 2.)]);
        let grown = offset(&spike, 1.0);
        let max_x = grown.iter().map(|p| p.x).fold(f64::MIN, f64::max);
        assert!(
            max_x < 102.5,
            "the spike's tip is capped, not mitred to infinity: {max_x}"
        );
    }

    #[test]
    fn unclip_grows_a_text_box_by_area_ratio_over_perimeter() {
        // 100×10: area 1000, perimeter 220, ratio 1.6 → distance 7.27.
        let rect = pts(&[(0., 0.), (100., 0.), (100., 10.), (0., 10.)]);
        let grown = unclip(&rect, 1.6);
        let d = 1000.0 * 1.6 / 220.0;
        assert!((area(&grown) - (100.0 + 2.0 * d) * (10.0 + 2.0 * d)).abs() < 1e-6);
    }

    #[test]
    fn convex_hull_drops_inner_points() {
        let cloud = pts(&[(0., 0.), (2., 0.), (2., 2.), (0., 2.), (1., 1.), (1., 0.)]);
        assert_eq!(convex_hull(&cloud).len(), 4);
    }

    #[test]
    fn min_area_rect_of_an_axis_aligned_box_is_itself() {
        let (rect, short) =
            min_area_rect(&pts(&[(1., 1.), (5., 1.), (5., 3.), (1., 3.), (3., 2.)]));
        assert!((area(&rect) - 8.0).abs() < 1e-9);
        assert!((short - 2.0).abs() < 1e-9);
    }

    #[test]
    fn points_map_back_and_to_percent() {
        let t = ImageTransform::identity(200, 100).then_resize(100, 100);
        let p = Point::new(50.0, 50.0).to_original(&t);
        assert_eq!(p, Point::new(100.0, 50.0));
        assert_eq!(p.to_percent(t.original_size()), [50.0, 50.0]);
        assert_eq!(
            Point::new(300.0, -5.0).to_percent(t.original_size()),
            [100.0, 0.0]
        );
    }
}
