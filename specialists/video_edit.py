"""Editing an object through a whole clip: recolour, remove or replace it on every frame.

The object is followed by the track specialist (a mask per frame from segment's box prompts);
each frame is then edited inside that frame's mask, and everything else keeps its bytes. What
makes the frames agree with one another (no flicker) is that nothing is invented per frame:

- **remove**: the hole is filled from the *other frames*. With a fixed camera the background
  behind a moving object is seen on the frames where the object is elsewhere; the temporal
  median of those frames, pixel by pixel, is that background (other objects passing by are a
  minority of the frames and drop out of the median). What no frame shows (an object that
  never moves off a spot) is filled from the frame's own surroundings (:mod:`.fill`), and
  only then painted by the model;
- **recolour**: the model paints the object on every frame in one batch (same noise, same
  conditioning), the new colour is the median of what it painted over all frames, and every
  frame's mask takes that one colour times its own shading;
- **replace**: the model paints the new shape once, on the frame where the object is most
  visible; that sprite follows the object (its offset on each frame is found by matching the
  object's own pixels, so occlusion and the frame's edge do not shift it) over the removed
  object's background.

The masks are completed where the tracker lost the object for a frame (occlusion): the
nearest tracked mask, moved by the matched offset, on the pixels of the object's colour.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from switchboard.core import (
    InvalidInputError,
    NotFoundError,
    Track,
    Video,
    mask_to_box,
    xyxy_iou,
)

from .fill import fill_from_surroundings, fill_smooth, paint_color, painted_color

VIDEO_OPS = ("recolor", "remove", "replace")
RIM_MIN_ALPHA = 0.15  # a ring pixel with less of the object's colour than this is background
RIM_RESIDUAL = 24.0  # RGB distance: a rim pixel lies this near the object-background line
RIM_PX = 2  # a mask's ring checked for the object's own anti-aliased or unsegmented rim
OBJECT_COLOR_DIST = 48.0  # RGB distance: a pixel this near the object's colour is the object
GROW_PX = 4  # a one-colour object's mask grows this far over pixels of its colour
UNIFORM_SHARE = 0.7  # an object whose mask is mostly one colour is edited on that colour only
MASK_AGREE = 0.6  # IoU: a tracked mask this far from the matched appearance is replaced
MATCH_TOL = 24  # grey levels: a template pixel this near the frame's matches
MATCH_SHARE = 0.5  # the object is there when this share of its seen inner pixels match
MAX_MISSED = 3  # frames the object may stay unmatched (hidden) before it is given up
STATIC_TOL = 12.0  # grey levels: a frame's pixel this near the temporal background is background
UNCOVER_MIN_PX = 40  # another object's part beside a hole smaller than this is left alone
UNCOVER_SHARE = 0.8  # the other object's seen part must match this well on the other frame
UNCOVER_FRAMES = 8  # the nearest frames searched for what the removed object hid
UNCOVER_SPEED = 16  # pixels per frame an object may move (ShapeWorld's fastest: 13)
FRAME_BATCH = 16  # frames per model pass (a 16-frame clip in one batch)


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    k = 2 * px + 1
    return cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)


def object_color(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The object's colour: the median of its eroded masks' pixels over every frame."""
    px = [frames[t][cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0]
          for t, m in enumerate(masks) if m.sum() >= 16]  # fmt: skip
    px = [p for p in px if len(p)] or [frames[t][m] for t, m in enumerate(masks) if m.any()]
    return np.median(np.concatenate(px).astype(np.float32), axis=0)


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask``."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def temporal_background(frames: np.ndarray, holes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(background HxWx3 uint8, known HxW bool)``: each pixel as the median of the frames on
    which no hole covers it (known where at least one frame shows it)."""
    vals = frames.astype(np.float32)
    vals[holes] = np.nan
    known = ~holes.all(0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: unknown
        med = np.nanmedian(vals, axis=0)
    bg = np.where(known[..., None], np.nan_to_num(np.round(med)), frames[0])
    return np.clip(bg, 0, 255).astype(np.uint8), known


def rim_alpha(frame: np.ndarray, mask: np.ndarray, color: np.ndarray, bg: np.ndarray,
              known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The object's rim outside ``mask``: pixels of its ``RIM_PX`` ring (where the background
    is known) that are a blend of the object's ``color`` and the background there (a lossy
    video's edge, an anti-aliased outline), and each one's share ``alpha`` of the object
    (``(ring HxW bool, alpha HxW float)``). A pixel off the line between the two colours (a
    neighbour of another colour) is not rim."""
    ring = _dilate(mask, RIM_PX) & ~mask & known
    alpha = np.zeros(mask.shape, np.float32)
    if not ring.any():
        return ring, alpha
    px = frame[ring].astype(np.float32)
    base = bg[ring].astype(np.float32)
    d = color[None] - base
    a = np.clip(((px - base) * d).sum(1) / np.maximum((d * d).sum(1), 1.0), 0.0, 1.0)
    resid = np.linalg.norm(px - (base + a[:, None] * d), axis=1)
    rim = (a >= RIM_MIN_ALPHA) & (resid <= RIM_RESIDUAL) & (np.linalg.norm(d, axis=1) >= 30)
    out = np.zeros_like(mask)
    out[ring] = rim
    alpha[ring] = np.where(rim, a, 0.0)
    return out, alpha


def with_rim(frame: np.ndarray, mask: np.ndarray, color: np.ndarray, bg: np.ndarray,
             known: np.ndarray) -> np.ndarray:  # fmt: skip
    """``mask`` plus its rim (:func:`rim_alpha`)."""
    return mask | rim_alpha(frame, mask, color, bg, known)[0]


def match_offset(
    frame: np.ndarray, template: np.ndarray, tmask: np.ndarray, guess: tuple[int, int], reach: int
) -> tuple[int, int, float]:
    """Where ``template`` (HxWx3, its object pixels ``tmask``) sits in ``frame``: the top-left
    ``(x, y)`` minimising the masked SSD within ``reach`` pixels of ``guess`` (the frame padded
    by the template's size, so an object half out of the frame still matches), and the RMS
    share of that placement's in-frame template pixels that match (within ``MATCH_TOL``)."""
    th, tw = tmask.shape
    pad = max(th, tw)
    big = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    gx, gy = guess[0] + pad, guess[1] + pad
    x0, y0 = max(gx - reach, 0), max(gy - reach, 0)
    x1 = min(gx + reach + tw, big.shape[1])
    y1 = min(gy + reach + th, big.shape[0])
    area = big[y0:y1, x0:x1].astype(np.float32)
    if area.shape[0] < th or area.shape[1] < tw:
        return guess[0], guess[1], 0.0
    m3 = np.repeat(tmask.astype(np.float32)[..., None], 3, axis=2)
    ssd = cv2.matchTemplate(area, template.astype(np.float32), cv2.TM_SQDIFF, mask=m3)
    # Off the frame the padding is black: a placement is scored on its in-frame pixels only,
    # as a mean (a placement half outside is not favoured for having fewer pixels).
    inside = np.zeros(big.shape[:2], np.float32)
    inside[pad:-pad, pad:-pad] = 1
    count = cv2.matchTemplate(inside[y0:y1, x0:x1], tmask.astype(np.float32), cv2.TM_CCORR)
    score = np.where(count >= 0.3 * tmask.sum(), ssd / np.maximum(count, 1), np.inf)
    sy, sx = np.unravel_index(int(np.argmin(score)), score.shape)
    # How well it matches: the share of the template's in-frame pixels within MATCH_TOL (a
    # partly occluded object still matches on the rest of its pixels).
    win = big[y0 + sy : y0 + sy + th, x0 + sx : x0 + sx + tw].astype(np.int16)
    close = np.abs(win - template.astype(np.int16)).max(-1) <= MATCH_TOL
    seen = tmask & (inside[y0 + sy : y0 + sy + th, x0 + sx : x0 + sx + tw] > 0)
    share = float((close & seen).sum() / max(seen.sum(), 1))
    return int(x0 + sx - pad), int(y0 + sy - pad), share


def shift(mask: np.ndarray, dx: int, dy: int, out_shape: tuple[int, int]) -> np.ndarray:
    """``mask`` (h x w) drawn at top-left ``(dx, dy)`` of an ``out_shape`` canvas."""
    out = np.zeros(out_shape, bool)
    h, w = mask.shape
    H, W = out_shape
    x0, y0, x1, y1 = max(dx, 0), max(dy, 0), min(dx + w, W), min(dy + h, H)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = mask[y0 - dy : y1 - dy, x0 - dx : x1 - dx]
    return out


class ObjectPath:
    """The tracked object on every frame: its mask (tracked, or completed where the tracker
    lost it), and where its appearance on the reference frame sits on each frame."""

    def __init__(self, frames: np.ndarray, track: Track, others: list[Track] | None = None) -> None:
        """``track``: the object (masks on its frames); ``others``: every object the tracker
        followed in the clip (boxes; the object's own track among them is recognised and
        skipped), kept out of the background estimate."""
        t_n, h, w = frames.shape[:3]
        masks = np.zeros((t_n, h, w), bool)
        tracked = np.zeros(t_n, bool)
        for t, m in zip(track.frames, track.masks or [], strict=False):
            masks[t] = np.asarray(m, bool)
            tracked[t] = masks[t].any()
        if not tracked.any():
            raise NotFoundError("the tracker found the object on no frame")
        self.frames, self.tracked = frames, tracked
        self.color = object_color(frames, masks)
        self.ref = self._reference(masks)
        # A one-colour object (most of its reference mask near its colour, as every ShapeWorld
        # shape and many real ones): its masks keep only the pixels of its colour, which
        # drops what a box prompt leaked into the background or a neighbour.
        px = frames[self.ref][masks[self.ref]].astype(np.float32)
        self.one_color = bool((self._near(px)).mean() >= UNIFORM_SHARE)
        raw = masks
        if self.one_color:
            masks = np.stack([
                _largest(_dilate(m, GROW_PX) & self._near(f)) if m.any() else m
                for f, m in zip(frames, masks, strict=True)
            ])  # fmt: skip
            kept = tracked & (masks.reshape(t_n, -1).sum(1) >= 8)
            if kept[self.ref]:
                tracked = kept
            else:  # its colour is not one colour after all: the masks as tracked
                self.one_color = False
                masks = raw
        x1, y1, x2, y2 = (int(v) for v in np.round(mask_to_box(masks[self.ref])))
        self.box = (x1, y1, x2, y2)
        self.template = frames[self.ref, y1:y2, x1:x2]
        self.tmask = masks[self.ref, y1:y2, x1:x2]
        # Matched on the object's inside: its outline's pixels change with sub-pixel motion.
        inner = cv2.erode(self.tmask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        self.tinner = inner if inner.sum() >= 16 else self.tmask
        self.at = self._offsets(masks)
        self.masks = self._complete(masks)
        self.holes = np.stack([_dilate(m, RIM_PX) if m.any() else m for m in self.masks])
        self.bg, self.known = temporal_background(frames, self.holes)
        # What tells other objects from background (``others``): the best background
        # estimate of each pixel, known wherever any frame shows it.
        self.bg_any, self.known_any = self.bg.copy(), self.known.copy()
        covered = self._covered(others or [])
        if covered.any():
            # The background behind the object from the frames where neither it nor another
            # object covers the pixel: a slow object beside it would otherwise win the median.
            # Where every frame has one or the other there, no frame shows the background: the
            # frame's own surroundings fill it (remove_all), not another object's colour.
            self.bg, self.known = temporal_background(frames, self.holes | covered)
            self.bg_any[self.known] = self.bg[self.known]

    def _covered(self, others: list[Track]) -> np.ndarray:
        """``[T, H, W]``: the boxes (grown by ``RIM_PX`` + 1) of the other objects' tracks on
        each frame; a track whose box matches this object's on a frame is this object."""
        t_n, h, w = self.frames.shape[:3]
        out = np.zeros((t_n, h, w), bool)
        mine = {t: mask_to_box(m) for t, m in enumerate(self.masks) if m.any()}
        for tr in others:
            same = [xyxy_iou(b, mine[t]) for t, b in zip(tr.frames, tr.xyxy, strict=True)
                    if t in mine]  # fmt: skip
            if same and max(same) >= 0.5:
                continue
            g = RIM_PX + 1
            for t, (x1, y1, x2, y2) in zip(tr.frames, tr.xyxy, strict=True):
                out[t, max(int(y1) - g, 0) : min(int(np.ceil(y2)) + g, h),
                    max(int(x1) - g, 0) : min(int(np.ceil(x2)) + g, w)] = True  # fmt: skip
        return out

    def region(self, t: int) -> np.ndarray:
        """The object's pixels on frame ``t``: its mask and its rim."""
        return with_rim(self.frames[t], self.masks[t], self.color, self.bg, self.known)

    def others(self, t: int) -> np.ndarray:
        """Pixels of frame ``t`` that are neither background nor this object: other objects."""
        d = np.abs(self.frames[t].astype(np.int16) - self.bg_any.astype(np.int16)).max(-1)
        return (d > STATIC_TOL) & self.known_any & ~self.holes[t]

    def _offsets(self, masks: np.ndarray) -> list[tuple[int, int] | None]:
        """Top-left of the reference appearance on each frame where the object is: between
        the first and last tracked frame, and before and after them as long as the appearance
        still matches (``MATCH_SHARE``) where the motion so far leads (the tracker may lose an
        object that the detector misses for a few frames, or give it a new id)."""
        idx = np.nonzero(self.tracked)[0]
        side = max(self.tmask.shape)
        th, tw = self.tmask.shape
        at: list[tuple[int, int] | None] = [None] * len(masks)
        for t in range(int(idx[0]), int(idx[-1]) + 1):
            if self.tracked[t]:
                cx, cy = self._centre(masks[t])
            else:  # between two tracked frames: the centres interpolated
                a, b = idx[idx < t][-1], idx[idx > t][0]
                ca, cb = np.array(self._centre(masks[a])), np.array(self._centre(masks[b]))
                cx, cy = ca + (cb - ca) * (t - a) / (b - a)
            guess = (int(round(cx - tw / 2)), int(round(cy - th / 2)))
            x, y, _ = match_offset(self.frames[t], self.template, self.tinner, guess, side // 2 + 4)
            at[t] = (x, y)
        for step, start in ((1, int(idx[-1])), (-1, int(idx[0]))):
            prev, vel, missed, t = at[start], (0, 0), 0, start + step
            if 0 <= start - step < len(at) and at[start - step] is not None:
                before = at[start - step]
                vel = (prev[0] - before[0], prev[1] - before[1])  # per frame, this way
            while 0 <= t < len(masks) and missed <= MAX_MISSED:
                guess = (prev[0] + vel[0] * (missed + 1), prev[1] + vel[1] * (missed + 1))
                reach = side // 4 + 4 + 4 * missed
                x, y, share = match_offset(self.frames[t], self.template, self.tinner, guess, reach)
                if share >= MATCH_SHARE:
                    vel = ((x - prev[0]) // (missed + 1), (y - prev[1]) // (missed + 1))
                    at[t], prev, missed = (x, y), (x, y), 0
                else:  # hidden or gone: the motion goes on a few frames before giving up
                    missed += 1
                t += step
        return at

    def _near(self, px: np.ndarray) -> np.ndarray:
        """Pixels (``[..., 3]``) within ``OBJECT_COLOR_DIST`` of the object's colour."""
        return np.linalg.norm(px.astype(np.float32) - self.color, axis=-1) <= OBJECT_COLOR_DIST

    def _reference(self, masks: np.ndarray) -> int:
        """The frame whose mask is the object's appearance: of the tracked frames whose mask
        keeps off the frame's edge (if any), the most uniform in colour (a mask that leaked
        into the background or a neighbour is not), the largest among the near-best."""
        h, w = masks.shape[1:]
        cands = [t for t in np.nonzero(self.tracked)[0]]
        inside = [
            t
            for t in cands
            if not (
                masks[t][0].any()
                or masks[t][-1].any()
                or masks[t][:, 0].any()
                or masks[t][:, -1].any()
            )
        ]
        cands = inside or cands
        uniform = []
        for t in cands:
            px = self.frames[t][masks[t]].astype(np.float32)
            med = np.median(px, axis=0)
            uniform.append(float((np.linalg.norm(px - med, axis=1) <= OBJECT_COLOR_DIST).mean()))
        best = max(uniform)
        near = [t for t, u in zip(cands, uniform, strict=True) if u >= best - 0.02]
        return int(max(near, key=lambda t: int(masks[t].sum())))

    @staticmethod
    def _centre(mask: np.ndarray) -> tuple[float, float]:
        x1, y1, x2, y2 = mask_to_box(mask)
        return (x1 + x2) / 2, (y1 + y2) / 2

    def _complete(self, masks: np.ndarray) -> np.ndarray:
        """Each frame where the object was matched gets the reference mask at the matched
        place, on the pixels of the object's colour, where the tracker lost the object or its
        mask disagrees with that (IoU < ``MASK_AGREE``: a box prompt that leaked into the
        background or a neighbour)."""
        out = masks.copy()
        for t, where in enumerate(self.at):
            if where is None:
                continue
            moved = shift(self.tmask, where[0], where[1], masks.shape[1:])
            if self.one_color:  # grown back over its colour (the outline moves sub-pixel)
                moved = _dilate(moved, 2) & self._near(self.frames[t])
            if self.tracked[t]:
                inter = (moved & masks[t]).sum()
                if inter >= MASK_AGREE * max((moved | masks[t]).sum(), 1):
                    continue
            out[t] = moved
        return out


def remove_all(
    frames: np.ndarray, path: ObjectPath, paint: Callable[[np.ndarray, np.ndarray], Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Every frame with the object removed, and the mask of pixels written per frame: the
    temporal background where another frame shows it, the frame's own surroundings next, the
    model (``paint(frame, hole) -> (frame, changed)``) last."""
    out = frames.copy()
    written = np.zeros(frames.shape[:3], bool)
    for t, m in enumerate(path.masks):
        if not m.any():
            continue
        hole = path.region(t)
        here = hole & path.known
        out[t][here] = path.bg[here]
        written[t] = hole
        rest = hole & ~path.known
        if rest.any():
            filled = fill_from_surroundings(out[t], rest)
            if filled is None:
                filled = fill_smooth(out[t], rest)
            if filled is None:
                filled = paint(out[t], rest)
            out[t], changed = filled
            written[t] |= changed
        uncover(out[t], frames, path, t, hole)
    return out, written


def uncover(
    out: np.ndarray, frames: np.ndarray, path: ObjectPath, t: int, hole: np.ndarray
) -> None:
    """Where the removed object hid part of another object, that part on frame ``t`` (in
    place on ``out``, the frame with the hole filled by background): each other object seen
    beside the hole is found on the nearest frames by its visible pixels, and a hole pixel
    takes that frame's pixel, moved by the object's motion, when it is the object's colour
    there and not under the removed object (the other object moves on; what was hidden on
    this frame is in view on another)."""
    others = path.others(t)
    ring = _dilate(hole, RIM_PX + 3) & others  # others keep RIM_PX off the mask
    if not ring.any():
        return
    n, labels, stats, _ = cv2.connectedComponentsWithStats(others.astype(np.uint8), connectivity=8)
    todo = hole.copy()
    h, w = hole.shape
    for k in np.unique(labels[ring]):
        if k == 0 or stats[k, cv2.CC_STAT_AREA] < UNCOVER_MIN_PX:
            continue
        x, y = int(stats[k, cv2.CC_STAT_LEFT]), int(stats[k, cv2.CC_STAT_TOP])
        bw, bh = int(stats[k, cv2.CC_STAT_WIDTH]), int(stats[k, cv2.CC_STAT_HEIGHT])
        part = labels[y : y + bh, x : x + bw] == k
        template = frames[t, y : y + bh, x : x + bw]
        color = np.median(template[part].astype(np.float32), axis=0)
        # The hole pixels this object could own: within its part's box grown by the hole's.
        near = np.zeros_like(hole)
        hy, hx = np.nonzero(hole)
        near[max(min(hy.min(), y), 0) : max(hy.max() + 1, y + bh),
             max(min(hx.min(), x), 0) : max(hx.max() + 1, x + bw)] = True  # fmt: skip
        want = todo & near
        for t2 in sorted(range(len(frames)), key=lambda f: abs(f - t))[1 : 1 + UNCOVER_FRAMES]:
            if not want.any():
                break
            reach = UNCOVER_SPEED * abs(t2 - t) + 8
            x2, y2, share = match_offset(frames[t2], template, part, (x, y), reach)
            if share < UNCOVER_SHARE:
                continue
            dx, dy = x2 - x, y2 - y
            py, px = np.nonzero(want)
            qy, qx = py + dy, px + dx
            inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
            py, px, qy, qx = py[inside], px[inside], qy[inside], qx[inside]
            src = frames[t2][qy, qx].astype(np.float32)
            mine = (np.linalg.norm(src - color, axis=1) <= OBJECT_COLOR_DIST) & ~path.holes[t2][
                qy, qx
            ]
            out[py[mine], px[mine]] = frames[t2][qy[mine], qx[mine]]
            want[py[mine], px[mine]] = False
            todo[py[mine], px[mine]] = False


def recolor_all(
    frames: np.ndarray, path: ObjectPath, painted: list[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Every frame's object in one colour: the median over frames of what the model painted
    (``painted[t]``, the model's repaint of frame ``t``, None where it did not paint)."""
    colors = [painted_color(frames[t], path.masks[t], p) for t, p in enumerate(painted)
              if p is not None and path.masks[t].sum() >= 8]  # fmt: skip
    if not colors:
        raise InvalidInputError("the object is too small on every frame to recolour")
    color = np.median(np.stack(colors), axis=0)
    out = frames.copy()
    written = np.zeros(frames.shape[:3], bool)
    for t, m in enumerate(path.masks):
        if m.any():
            out[t] = paint_color(frames[t], m, color)
            # The rim (a blend of the object and the background) moves by its share of the
            # colour change: a compressed video's edge takes the new colour, not a halo.
            rim, alpha = rim_alpha(frames[t], m, path.color, path.bg, path.known)
            shifted = frames[t][rim] + alpha[rim][:, None] * (color - path.color)[None]
            out[t][rim] = np.clip(shifted, 0, 255).round().astype(np.uint8)
            written[t] = m | rim
    return out, written


def replace_all(
    removed: np.ndarray,
    written: np.ndarray,
    frames: np.ndarray,
    path: ObjectPath,
    sprite: np.ndarray,
    alpha: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The new shape (``sprite``, a whole frame, with its pixels ``alpha``, painted on the
    reference frame) pasted on each frame where the object is, moved as the
    object moved, over ``removed`` (the frames with the old object removed). Pixels of other
    objects (neither background nor the old object) stay in front of it."""
    h, w = frames.shape[1:3]
    rx, ry = path.at[path.ref] or (path.box[0], path.box[1])
    out, changed = removed.copy(), written.copy()
    for t, where in enumerate(path.at):
        if where is None or not path.masks[t].any():
            continue
        dx, dy = where[0] - rx, where[1] - ry
        sx, sy = dx, dy
        # Other objects stay in front of the new shape (their z-order is not known; in front
        # is the choice that never paints over one).
        place = shift(alpha, sx, sy, (h, w)) & ~path.others(t)
        src = np.zeros_like(frames[t])
        src[shift(np.ones(alpha.shape, bool), sx, sy, (h, w))] = sprite[
            shift(np.ones((h, w), bool), -sx, -sy, alpha.shape)
        ]
        out[t][place] = src[place]
        changed[t] |= place
    return out, changed


def flicker(frames: np.ndarray, masks: np.ndarray) -> float:
    """Mean absolute frame-to-frame change (grey levels) inside the edited region: over each
    pair of consecutive frames, the pixels either frame edited."""
    vals = []
    for t in range(1, len(frames)):
        region = masks[t] | masks[t - 1]
        if region.any():
            d = np.abs(frames[t].astype(np.float32) - frames[t - 1].astype(np.float32))
            vals.append(float(d[region].mean()))
    return float(np.mean(vals)) if vals else 0.0


def check_video_op(op: str, video: Video) -> None:
    if op not in VIDEO_OPS:
        raise InvalidInputError(
            f"{op!r} does not take a video: a video can be edited with {', '.join(VIDEO_OPS)} "
            "(send one frame as an image to add, move or generate)"
        )
    if video.num_frames < 2:
        raise InvalidInputError("a video edit needs a clip of at least 2 frames")
