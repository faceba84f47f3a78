"""Filling a hole from its own surroundings, and recolouring an object inside its mask.

Two edits do not need a diffusion model to invent pixels, and look wrong when it does:

- **removing an object** (``fill_from_surroundings``): the background behind it is, most of the
  time, the background around it — a texture (stripes, a checkerboard, noise, a gradient, a
  wall, grass) that repeats somewhere else in the image. The hole is filled with the patch
  whose ring of known pixels best matches the hole's own ring (masked sum of squared
  differences over every placement, ``cv2.matchTemplate``), among placements whose hole part
  is known background: not the hole itself and no pixel unlike the ring's colours (another
  object). Exemplar-based inpainting in its simplest form (Criminisi et al. 2004 grow it patch
  by patch; one patch is enough for the holes an object leaves). When no placement matches the
  ring closely (``MATCH_RMS``), the caller paints the hole with the diffusion model instead;
- **recolouring an object** (``recolor_within``): the object keeps its pixels' shading and its
  exact outline, and takes the colour the model painted (the median of the painted pixels
  inside the mask): the tiny editor, at 64 px, paints a blob of the right colour but not the
  arms of a cross.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

RING_PX = 4  # the known pixels around the hole that a placement must match
SEARCH_SCALE = 2.0  # the search window: the hole's box grown by this times its longer side
RING_KEEP = 0.75  # the share of the ring (best matched first) that votes in the second round
# Grey levels: the largest RMS difference on the ring a copied patch may have. Measured on 80
# ShapeWorld removals: every copy within 4 restored the background at >= 28 dB but one (stripes,
# checkers, gradients, plain walls); noise backgrounds match at 5-15 and copy at 14-32 dB.
MATCH_RMS = 4.0
UNLIKE_SHARE = 0.01  # a placement whose hole part has more pixels unlike the ring is refused
COLOR_BINS = 16  # per channel, for "a colour the ring has" (with one bin of tolerance)
GROW_PX = 1  # a removal also takes the object's anti-aliased rim
NEW_COLOR_SHARE = 0.25  # the painted pixels that moved most, whose median is the new colour
# The smooth-surface fill. Tuned on generated scenes 5000-5079 (the patch fill's tuning set).
SMOOTH_PX = 12  # the annulus around the hole the surface is fitted on
SMOOTH_INNER_PX = 4  # its inner band, which the outer band must predict (choosing the degree)
SMOOTH_TOL = 10.0  # grey levels (any channel): a pixel further off the surface is not background
SMOOTH_NEAR = 0.1  # the largest share of the annulus off the surface by 1-4x SMOOTH_TOL: pixels
# like the background but not on its surface (stripes, checks: ~0.5; other objects are further)
SMOOTH_MIN = 0.25  # the smallest share of the annulus on the surface
SMOOTH_RMS = 6.0  # the largest RMS of the explained pixels (noise over shading: 3.5-5)
SMOOTH_TRIES = 200  # RANSAC draws of three pixels


def _grown(hole: np.ndarray, px: int = GROW_PX) -> np.ndarray:
    """``hole`` (HW bool) grown by ``px`` pixels on every side (a square kernel)."""
    k = 2 * px + 1
    return cv2.dilate(hole.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)


def _ring(hole: np.ndarray, width: int) -> np.ndarray:
    return _grown(hole, width) & ~hole


def _unlike(image: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """HW bool: pixels whose colour (binned, one bin of tolerance) the ring does not have."""
    q = (image.astype(np.int32) * COLOR_BINS) // 256
    r = q[ring]
    flat = (r[:, 0] * COLOR_BINS + r[:, 1]) * COLOR_BINS + r[:, 2]
    seen = (np.bincount(flat, minlength=COLOR_BINS**3) > 0).reshape((COLOR_BINS,) * 3)
    pad, b = np.pad(seen, 1), COLOR_BINS
    near = np.zeros_like(seen)
    for dz, dy, dx in itertools.product(range(3), repeat=3):  # one bin of tolerance each way
        near |= pad[dz : dz + b, dy : dy + b, dx : dx + b]
    seen = near
    return ~seen[q[..., 0], q[..., 1], q[..., 2]]


def fill_from_surroundings(
    image: np.ndarray, hole: np.ndarray, max_rms: float = MATCH_RMS
) -> tuple[np.ndarray, np.ndarray] | None:
    """``image`` HWC uint8 with ``hole`` (HW bool, grown by ``GROW_PX``) filled by the best
    matching patch of its own background, and the mask of pixels written; None when no
    placement's ring matches within ``max_rms`` grey levels (or the hole leaves no room)."""
    h, w = image.shape[:2]
    hole = _grown(hole)
    ring = _ring(hole, RING_PX)
    if not hole.any() or not ring.any():
        return None
    ys, xs = np.nonzero(hole | ring)
    y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    if y2 - y1 >= h or x2 - x1 >= w:
        return None
    # The search stays near the hole (the background most like the hole's, and a bounded cost
    # on a huge image): the hole's box grown by SEARCH_SCALE times its longer side.
    m = int(SEARCH_SCALE * max(y2 - y1, x2 - x1))
    sub = (slice(max(y1 - m, 0), min(y2 + m, h)), slice(max(x1 - m, 0), min(x2 + m, w)))
    oy, ox = sub[0].start, sub[1].start
    area = image[sub]
    img = area.astype(np.float32)
    tpl = image[y1:y2, x1:x2].astype(np.float32)
    hole_t = hole[y1:y2, x1:x2].astype(np.float32)
    ring_t = ring[y1:y2, x1:x2]
    on_hole = cv2.matchTemplate(hole[sub].astype(np.float32), hole_t, cv2.TM_CCORR) > 0.5
    best = None
    for _ in range(2):
        # Placements whose hole part lands on the hole (unknown pixels) or on colours the ring
        # does not have (another object). The second round drops the ring pixels the first
        # placement matched worst: where the ring crosses another object no background patch
        # matches it, so it must neither vote nor count as background.
        full = np.zeros_like(ring)
        full[y1:y2, x1:x2] = ring_t
        unlike = cv2.matchTemplate(
            _unlike(area, full[sub]).astype(np.float32), hole_t, cv2.TM_CCORR
        )
        bad = on_hole | (unlike > UNLIKE_SHARE * hole_t.sum())
        if bad.all():
            return None
        mask3 = np.repeat(ring_t.astype(np.float32)[..., None], 3, axis=2)
        ssd = np.where(bad, np.inf, cv2.matchTemplate(img, tpl, cv2.TM_SQDIFF, mask=mask3))
        sy, sx = np.unravel_index(int(np.argmin(ssd)), ssd.shape)
        best = float(ssd[sy, sx])
        src = img[sy : sy + (y2 - y1), sx : sx + (x2 - x1)]
        err = ((tpl - src) ** 2).sum(-1)
        ring_t = ring_t & (err <= np.quantile(err[ring_t], RING_KEEP))
    rms = np.sqrt(max(best, 0.0) / (3 * max(int(mask3[..., 0].sum()), 1)))
    if not np.isfinite(rms) or rms > max_rms:
        return None
    out = image.copy()
    src = image[oy + sy : oy + sy + (y2 - y1), ox + sx : ox + sx + (x2 - x1)]
    window = out[y1:y2, x1:x2]
    inside = hole[y1:y2, x1:x2]
    window[inside] = src[inside]
    return out, hole


def recolor_within(image: np.ndarray, mask: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """``image`` with the object under ``mask`` recoloured to the colour ``painted`` (the
    model's repaint of the same image) gives it inside the mask (:func:`painted_color`),
    keeping each pixel's shading (:func:`paint_color`)."""
    return paint_color(image, mask, painted_color(image, mask, painted))


def _inner(mask: np.ndarray) -> np.ndarray:
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return inner if inner.sum() >= 8 else mask


def painted_color(image: np.ndarray, mask: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """The colour (RGB float) the model painted the object under ``mask``: the median of the
    painted pixels that moved farthest from the object's own colour (the top
    :data:`NEW_COLOR_SHARE`): where the model painted a blob smaller than the object, the rest
    of the mask holds background or the old colour, not the new one."""
    inner = _inner(mask)
    old = np.median(image[inner].astype(np.float32), axis=0)
    new = painted[inner].astype(np.float32)
    moved = np.linalg.norm(new - old, axis=1)
    return np.median(new[moved >= np.quantile(moved, 1 - NEW_COLOR_SHARE)], axis=0)


def paint_color(image: np.ndarray, mask: np.ndarray, color: np.ndarray) -> np.ndarray:
    """``image`` with the pixels of ``mask`` in ``color`` times each pixel's shading (its
    brightness relative to the object's median); every other pixel as it was."""
    luma = image[mask].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    shade = luma / max(float(np.median(luma)), 1.0) if luma.size else luma
    out = image.copy()
    out[mask] = np.clip(np.asarray(color)[None] * shade[:, None], 0, 255).round().astype(np.uint8)
    return out


def _poly(ys: np.ndarray, xs: np.ndarray, degree: int, side: float) -> np.ndarray:
    """The design matrix of a 2-D polynomial of ``degree`` (1-3) in image-normalised x, y."""
    y, x = ys / side - 0.5, xs / side - 0.5
    cols = [np.ones_like(x), x, y]
    if degree >= 2:
        cols += [x * x, x * y, y * y]
    if degree >= 3:
        cols += [x**3, x * x * y, x * y * y, y**3]
    return np.stack(cols, 1)


def fill_smooth(
    image: np.ndarray, hole: np.ndarray, max_rms: float = SMOOTH_RMS
) -> tuple[np.ndarray, np.ndarray] | None:
    """``image`` HWC uint8 with ``hole`` (HW bool, grown by ``GROW_PX``) filled by a smooth
    surface fitted to its surroundings, and the mask of pixels written; None when the surface
    leaves background-like pixels unexplained (:data:`SMOOTH_NEAR`: a texture), explains too
    little of the surroundings (:data:`SMOOTH_MIN`), or fits at RMS > ``max_rms``."""
    hole = _grown(hole)
    ann = _ring(hole, SMOOTH_PX)
    ys, xs = np.nonzero(ann)
    n = len(ys)
    if not hole.any() or n < 30:
        return None
    side = float(max(image.shape[:2]))
    fy, fx = ys.astype(np.float64), xs.astype(np.float64)
    vals = image[ys, xs].astype(np.float64)
    # RANSAC on a plane (loose, for shading that curves): the background's pixels, not a
    # neighbour's, decide the surface.
    plane = _poly(fy, fx, 1, side)
    rng = np.random.default_rng(0)
    keep, best = None, -1
    for _ in range(SMOOTH_TRIES):
        pick = rng.choice(n, 3, replace=False)
        try:
            coef = np.linalg.solve(plane[pick], vals[pick])
        except np.linalg.LinAlgError:
            continue
        inl = np.abs(plane @ coef - vals).max(1) <= 2 * SMOOTH_TOL
        if int(inl.sum()) > best:
            keep, best = inl, int(inl.sum())
    if keep is None or best < SMOOTH_MIN * n:
        return None
    # The degree whose fit on the outer band best predicts the inner band beside the hole.
    near = _ring(hole, SMOOTH_INNER_PX)[ys, xs]
    fit, held = keep & ~near, keep & near
    errs = {}
    for degree in (1, 2, 3):
        a = _poly(fy, fx, degree, side)
        if fit.sum() >= 3 * a.shape[1] and held.sum() >= 10:
            coef, *_ = np.linalg.lstsq(a[fit], vals[fit], rcond=None)
            errs[degree] = float(np.sqrt(((a[held] @ coef - vals[held]) ** 2).mean()))
    degree = min(errs, key=errs.__getitem__) if errs else 1
    a = _poly(fy, fx, degree, side)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(a[keep], vals[keep], rcond=None)
        off = np.abs(a @ coef - vals).max(1)
        keep = off <= SMOOTH_TOL
        if keep.sum() < max(SMOOTH_MIN * n, 3 * a.shape[1]):
            return None
    unexplained = (off > SMOOTH_TOL) & (off <= 4 * SMOOTH_TOL)
    rms = float(np.sqrt(((a[keep] @ coef - vals[keep]) ** 2).mean()))
    if unexplained.mean() > SMOOTH_NEAR or rms > max_rms:
        return None
    hy, hx = np.nonzero(hole)
    out = image.copy()
    pred = _poly(hy.astype(np.float64), hx.astype(np.float64), degree, side) @ coef
    out[hy, hx] = np.clip(pred, 0, 255).round().astype(np.uint8)
    return out, hole
