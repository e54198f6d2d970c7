"""Polygons in pixels: area, perimeter, Douglas–Peucker simplification,
outward offset ("unclip", as text detectors grow their shrunken kernels),
convex hull and minimum-area rectangle, for outlines such as
:func:`cls_hooks.native.regions` returns.

Points are ``(x, y)`` tuples of floats. Every function reproduces the Rust
SDK's ``hook_sdk::polygon`` step for step in ``f64`` (sums in order, no
compensated summation), so a Python hook and its Rust twin draw the same
outlines. Outlines have tens of points: plain Python is fast enough here;
keep per-pixel work in :mod:`cls_hooks.native`.

>>> square = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)]
>>> (area(square), perimeter(square))
(16.0, 16.0)
>>> area(offset(square, 1.0))
36.0
"""

import math
import sys

#: Mitred corners reach at most this many times the offset distance.
MITER_LIMIT = 2.0


def _norm(x, y):
    return math.sqrt(x * x + y * y)


def signed_area(points):
    """Signed area (shoelace); the sign tells the winding."""
    n = len(points)
    total = 0.0
    for i in range(n):
        (ax, ay), (bx, by) = points[i], points[(i + 1) % n]
        total += ax * by - ay * bx
    return total / 2.0


def area(points):
    """Area of a simple polygon."""
    return abs(signed_area(points))


def perimeter(points):
    """Length of the closed outline."""
    n = len(points)
    if n < 2:
        return 0.0
    total = 0.0
    for i in range(n):
        (ax, ay), (bx, by) = points[i], points[(i + 1) % n]
        total += _norm(bx - ax, by - ay)
    return total


def _segment_distance(p, a, b):
    abx, aby = b[0] - a[0], b[1] - a[1]
    len2 = abx * abx + aby * aby
    if len2 == 0.0:
        return _norm(p[0] - a[0], p[1] - a[1])
    t = min(max(((p[0] - a[0]) * abx + (p[1] - a[1]) * aby) / len2, 0.0), 1.0)
    return _norm(p[0] - (a[0] + t * abx), p[1] - (a[1] + t * aby))


def simplify(points, epsilon):
    """Douglas–Peucker simplification of a closed polygon: every dropped
    vertex lies within ``epsilon`` of the result (split at the vertex
    farthest from the first, as OpenCV's ``approxPolyDP`` does).

    >>> simplify([(0., 0.), (5., 0.1), (10., 0.), (10., 10.), (5., 10.), (0., 10.)], 0.5)
    [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]
    """
    n = len(points)
    if n <= 3:
        return list(points)
    x0, y0 = points[0]
    far, far_d = n // 2, -1.0
    for i in range(1, n):
        d = _norm(points[i][0] - x0, points[i][1] - y0)
        if d >= far_d:  # the last of equals, as Rust's max_by
            far, far_d = i, d
    keep = [False] * (n + 1)
    keep[0] = keep[far] = True
    stack = [(0, far), (far, n)]
    while stack:
        start, end = stack.pop()
        if end <= start + 1:
            continue
        a, b = points[start % n], points[end % n]
        worst, worst_d = start, -1.0
        for i in range(start + 1, end):
            d = _segment_distance(points[i % n], a, b)
            if d > worst_d:
                worst, worst_d = i, d
        if worst_d > epsilon:
            keep[worst] = True
            stack.append((start, worst))
            stack.append((worst, end))
    return [points[i] for i in range(n) if keep[i]]


def _dedup(points):
    out = []
    for p in points:
        if not out or out[-1] != p:
            out.append(p)
    while len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def offset(points, distance):
    """Every edge moved ``distance`` pixels outwards (negative: inwards);
    corners mitred, bevelled where the mitre would reach beyond twice the
    distance."""
    pts = _dedup([(float(x), float(y)) for x, y in points])
    n = len(pts)
    if n < 3 or distance == 0.0:
        return pts
    winding = 1.0 if signed_area(pts) >= 0.0 else -1.0
    sign = 1.0 if distance > 0.0 else -1.0

    def normal(a, b):
        dx, dy = b[0] - a[0], b[1] - a[1]
        length = max(_norm(dx, dy), sys.float_info.min)
        return (winding * dy / length, -winding * dx / length)

    out = []
    for i in range(n):
        prev, cur, nxt = pts[(i + n - 1) % n], pts[i], pts[(i + 1) % n]
        n1, n2 = normal(prev, cur), normal(cur, nxt)
        bx, by = n1[0] + n2[0], n1[1] + n2[1]
        length = _norm(bx, by)
        # cos of half the turning angle; 0 for a full reversal.
        cos_half = (bx * n1[0] + by * n1[1]) / length if length > 1e-12 else 0.0
        ux, uy = cur[0] - prev[0], cur[1] - prev[1]
        vx, vy = nxt[0] - cur[0], nxt[1] - cur[1]
        convex = winding * (ux * vy - uy * vx) * sign >= 0.0
        if cos_half > 1.0 / MITER_LIMIT:
            reach = distance / cos_half
            out.append((cur[0] + bx / length * reach, cur[1] + by / length * reach))
        elif convex:
            out.append((cur[0] + n1[0] * distance, cur[1] + n1[1] * distance))
            out.append((cur[0] + n2[0] * distance, cur[1] + n2[1] * distance))
        elif length > 1e-12:
            # A sharp inward corner: a capped mitre keeps the outline simple.
            reach = distance * MITER_LIMIT
            out.append((cur[0] + bx / length * reach, cur[1] + by / length * reach))
    return out


def convex_hull(points):
    """Convex hull (Andrew's monotone chain)."""
    pts = []
    for p in sorted((float(x), float(y)) for x, y in points):
        if not pts or pts[-1] != p:
            pts.append(p)
    if len(pts) < 3:
        return pts
    hull = []
    for chain in (pts, pts[::-1]):
        start = len(hull)
        for p in chain:
            while len(hull) >= start + 2:
                (ax, ay), (bx, by) = hull[-2], hull[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) <= 0.0:
                    hull.pop()
                else:
                    break
            hull.append(p)
        hull.pop()
    return hull


def min_area_rect(points):
    """The smallest-area rectangle (any rotation) containing the points: its
    four corners and the length of its shorter side.

    >>> corners, short = min_area_rect([(2.0, 0.0), (4.0, 2.0), (2.0, 4.0), (0.0, 2.0)])
    >>> abs(short - math.sqrt(8)) < 1e-9
    True
    """
    hull = convex_hull(points)
    if not hull:
        return [(0.0, 0.0)] * 4, 0.0
    n = len(hull)
    best = None
    for i in range(n):
        (ax, ay), (bx, by) = hull[i], hull[(i + 1) % n]
        dx, dy = bx - ax, by - ay
        length = _norm(dx, dy)
        ux, uy = (dx / length, dy / length) if length > 0.0 else (1.0, 0.0)
        vx, vy = -uy, ux
        us = [px * ux + py * uy for px, py in hull]
        vs = [px * vx + py * vy for px, py in hull]
        umin, umax, vmin, vmax = min(us), max(us), min(vs), max(vs)
        rect_area = (umax - umin) * (vmax - vmin)
        if best is None or rect_area < best[0]:
            corners = [(ux * s + vx * t, uy * s + vy * t) for s, t in ((umin, vmin), (umax, vmin), (umax, vmax), (umin, vmax))]
            best = (rect_area, corners, min(umax - umin, vmax - vmin))
    return best[1], best[2]


def unclip(points, ratio):
    """Grown like DBNet's ``unclip``: by ``area × ratio / perimeter`` pixels
    outwards (a text detector's kernels are shrunk by that much in training)."""
    length = perimeter(points)
    if length == 0.0:
        return list(points)
    return offset(points, area(points) * ratio / length)
