"""track: follow objects through a video with Ultralytics' trackers over detect, with a mask per
frame from segment (box prompts).

The referent is chosen by arguments (a referring expression or a box on a given frame), by the
router's signal on that frame (segment's signal space), or, with neither, every detected object
matching ``query`` is tracked. Detect and segment are the registry's instances unless given, so
tracking loads no second copy of either model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from switchboard.core import (
    ExampleRequest,
    Image,
    InvalidInputError,
    NotFoundError,
    SignalSpec,
    Specialist,
    Track,
    Tracks,
    Video,
    mask_to_box,
    xyxy_iou,
)
from switchboard.core.config import get_settings
from switchboard.core.specialist import check_object_resolved

from .colors import color_in_box
from .objects import detect_objects, not_found
from .queries import parse_query, resolve_referent, unknown_noun
from .segment import NUM_SIGNAL_TOKENS, clip_to_box

# Frames per network batch for detection and for SAM's image encoder: a video is at hand whole,
# and batched frames use the two cores better than one frame at a time.
FRAME_BATCH = 8


class TrackArgs(BaseModel):
    """``target`` (text) or ``box`` (XYXY on frame ``frame``) picks one object; otherwise every
    object matching ``query`` ("circles", "red shapes", or nothing for all) is tracked."""

    target: str | None = Field(None, description="referring expression, read on `frame`")
    object: int | None = Field(
        None,
        ge=1,
        description="#k of the object in the image's object list (the agent "
        "passes that detection's box)",
    )
    box: tuple[float, float, float, float] | None = None
    frame: int = Field(0, ge=0)
    query: str | None = None
    masks: bool = Field(True, description="also return a mask per frame (slower)")
    tracker: Literal["bytetrack", "botsort"] | None = None
    score_threshold: float = Field(0.1, ge=0.0, le=1.0)
    others: bool = Field(
        False,
        description="also return the other objects followed in the clip (boxes only)",
        json_schema_extra={"x-peer": True},  # for another specialist (edit), not the router
    )


@dataclass
class _Dets:
    """The detection view Ultralytics' trackers read: ``conf``, ``cls``, ``xywh``, indexing."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray

    @property
    def xywh(self) -> np.ndarray:
        x1, y1, x2, y2 = self.xyxy.T
        return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, idx: Any) -> _Dets:
        return _Dets(self.xyxy[idx], self.conf[idx], self.cls[idx])


def make_tracker(kind: str) -> Any:
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    cfg = IterableSimpleNamespace(**YAML.load(check_yaml(f"{kind}.yaml")))
    if kind == "botsort":
        cfg.with_reid = False  # appearance features need a ReID model we do not ship
        cfg.gmc_method = "none"  # camera-motion compensation: our videos have a fixed camera
        return BOTSORT(cfg)
    return BYTETracker(cfg)


class TrackSpecialist(Specialist):
    name = "track"
    description = (
        "Track objects through a video: boxes and masks per frame with stable ids; "
        "one referent (text, a box on a frame, or the router's signal) or every match."
    )
    tasks = ("track", "follow")
    Args = TrackArgs
    media = ("video",)
    signal = SignalSpec(num_tokens=NUM_SIGNAL_TOKENS, dim=256)  # segment's, on `frame`
    examples = (
        ExampleRequest(request="track the {ref} through the video", args={"target": "{ref}"}),
        ExampleRequest(request="follow the {ref}", args={"target": "{ref}"}),
        ExampleRequest(request="track every {shape}", args={"query": "{shape}s"}),
    )

    @classmethod
    def args_for(cls, intent: Any) -> dict[str, Any] | None:
        if intent.task == "track" and intent.target_text:
            return {"target": intent.target_text}
        return None

    def __init__(self, detector: Any = None, segmenter: Any = None) -> None:
        super().__init__()
        self._detector, self._segmenter = detector, segmenter

    @property
    def detector(self) -> Any:
        if self._detector is None:
            from . import peer

            self._detector = peer(self, "detect")
        return self._detector

    @property
    def segmenter(self) -> Any:
        if self._segmenter is None:
            from . import peer

            self._segmenter = peer(self, "segment")
        return self._segmenter

    def load(self, device: str = "cpu", dtype: Any = None) -> TrackSpecialist:
        # Segment loads on first need (masks or a signal), so box-only tracking costs no SAM.
        if not self.detector.loaded:
            self.detector.load(device, dtype)
        return super().load(device, dtype)

    def _segment(self) -> Any:
        if not self.segmenter.loaded:
            self.segmenter.load(self.device or "cpu", self.dtype)
        return self.segmenter

    def track_all(self, frames: np.ndarray, kind: str, conf: float) -> dict[int, dict[str, list]]:
        """Run detect + tracker over ``frames`` ``[T, H, W, 3]``: id → frames, boxes, classes."""
        tracker = make_tracker(kind)
        tracks: dict[int, dict[str, list]] = {}
        # A new track is confirmed one frame after it starts; with the whole video at hand we
        # report its first frame too (offline tracking), instead of dropping it.
        pending: dict[int, tuple[int, tuple[float, ...], int]] = {}
        detections = [
            det
            for at in range(0, len(frames), FRAME_BATCH)
            for det in self.detector.detect_batch(frames[at : at + FRAME_BATCH], conf=conf)
        ]
        for t, frame in enumerate(frames):
            boxes, scores, cls = detections[t]
            rows = tracker.update(_Dets(boxes, scores, cls), np.ascontiguousarray(frame[..., ::-1]))
            h, w = frame.shape[:2]
            for row in rows:
                tid, idx = int(row[4]), int(row[7])
                tr = tracks.setdefault(tid, {"frames": [], "xyxy": [], "cls": []})
                if tid in pending:
                    t0, box0, cls0 = pending.pop(tid)
                    tr["frames"].append(t0)
                    tr["xyxy"].append(box0)
                    tr["cls"].append(cls0)
                # Report the matched detection's box; the tracker's own is Kalman-smoothed.
                box = boxes[idx] if 0 <= idx < len(boxes) else np.clip(row[:4], 0, [w, h, w, h])
                tr["frames"].append(t)
                tr["xyxy"].append(tuple(float(v) for v in box))
                tr["cls"].append(int(row[6]))
            for st in tracker.tracked_stracks:
                idx = int(st.idx)
                new = not st.is_activated and st.frame_id == tracker.frame_id
                if new and 0 <= idx < len(boxes):
                    pending[st.track_id] = (t, tuple(float(v) for v in boxes[idx]), int(cls[idx]))
        return tracks

    def _referents(
        self, frames: np.ndarray, args: TrackArgs, signal: Any
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Where the referent is, as (frame, box) readings in frame order.

        A box is read on ``frame``. Words are read on ``frame`` and then on each later frame:
        in a clip an object may enter, or come out from behind another, after the first frame
        ("where does the triangle go?"), and the tracker may confirm its track a frame or two
        after the detector first sees it. The router's signal refines the text call rather
        than replacing it: it is read on ``frame`` when the call has no words, or when its
        words fit nothing on any frame (the detector missed the referent — where the signal's
        own pointer over the image serves). Words that fit nothing and no signal:
        :class:`NotFoundError` naming what the first frame holds."""
        if args.box is not None:
            yield args.frame, np.array(args.box, float)
        elif args.target:
            try:
                yield from self._word_referents(frames, args)
            except NotFoundError:
                if signal is None:
                    raise
                yield self._signal_referent(frames, args, signal)
        elif signal is not None:
            yield self._signal_referent(frames, args, signal)

    def _signal_referent(
        self, frames: np.ndarray, args: TrackArgs, signal: Any
    ) -> tuple[int, np.ndarray]:
        """The referent's box on ``frame`` from segment's mask for the router's signal."""
        masks = self._segment()(Image(pixels=frames[args.frame]), {}, signal=signal)
        box = mask_to_box(masks.masks[0])
        if box is None:
            raise InvalidInputError("the signal selects nothing on the referent frame")
        return args.frame, np.array(box, float)

    def _word_referents(
        self, frames: np.ndarray, args: TrackArgs
    ) -> Iterator[tuple[int, np.ndarray]]:
        """The detections the call's words resolve to, frame by frame from ``frame`` (up to
        ``frame`` alone for a noun the detector does not know)."""
        names = self.detector.class_names
        side = float(max(frames.shape[1:3]))
        first: list[Any] | None = None
        seen = False
        last = args.frame if unknown_noun(args.target, names) else len(frames) - 1
        for t in range(args.frame, last + 1):
            objects = detect_objects(self.detector, frames[t])
            first = objects if first is None else first
            hit = resolve_referent(args.target, objects, names, side)
            if hit is not None:
                seen = True
                yield t, np.array(hit.xyxy, float)
        if not seen:
            where = f" on frame {args.frame}" + (" or after" if last > args.frame else "")
            raise not_found(args.target, first or [], where)

    @staticmethod
    def _pick(
        raw: dict[int, dict[str, list]], readings: Iterator[tuple[int, np.ndarray]]
    ) -> dict[int, dict[str, list]]:
        """The one track that the first reading of the referent to land on a track overlaps
        (IoU >= 0.3 on that frame); {} when none does."""
        for at, box in readings:
            best, best_iou = None, 0.0
            for tid, tr in raw.items():
                if at in tr["frames"]:
                    iou = xyxy_iou(tr["xyxy"][tr["frames"].index(at)], box)
                    if iou > best_iou:
                        best, best_iou = tid, iou
            if best is not None and best_iou >= 0.3:
                return {best: raw[best]}
        return {}

    def run(self, media: Video, args: TrackArgs, signal: Any = None) -> Tracks:
        check_object_resolved(args)
        frames = media.frames
        if media.num_frames < 2:
            raise InvalidInputError("tracking needs a video of at least 2 frames")
        if args.frame >= media.num_frames:
            raise InvalidInputError(
                f"frame {args.frame} is past the last frame ({media.num_frames - 1})"
            )
        if args.box is not None:
            x1, y1, x2, y2 = args.box
            if not (0 <= x1 < x2 <= media.width and 0 <= y1 < y2 <= media.height):
                raise InvalidInputError(
                    f"box {args.box} is not XYXY inside the {media.width}x{media.height} frame"
                )
        kind = args.tracker or get_settings().tracker
        everyone = raw = self.track_all(frames, kind, args.score_threshold)
        names = self.detector.class_names
        if args.box is not None or signal is not None or args.target:
            raw = self._pick(raw, self._referents(frames, args, signal))
        elif args.query:
            q = parse_query(args.query, names)
            raw = {tid: tr for tid, tr in raw.items() if self._matches(frames, tr, q, names)}
        masks = self._masks(frames, raw) if args.masks else {}
        out = []
        for tid, tr in sorted(raw.items()):
            label = names[max(set(tr["cls"]), key=tr["cls"].count)]
            out.append(
                Track(
                    track_id=tid,
                    label=label,
                    frames=tr["frames"],
                    xyxy=tr["xyxy"],
                    masks=masks.get(tid),
                )
            )
        others = []
        if args.others:
            for tid, tr in sorted(everyone.items()):
                if tid not in raw:
                    label = names[max(set(tr["cls"]), key=tr["cls"].count)]
                    others.append(
                        Track(track_id=tid, label=label, frames=tr["frames"], xyxy=tr["xyxy"])
                    )
        return Tracks(tracks=out, num_frames=media.num_frames, others=others)

    def _masks(self, frames: np.ndarray, raw: dict[int, dict[str, list]]) -> dict[int, list]:
        """A mask per track and frame from box prompts, frame by frame so that each frame is
        embedded once and decoded once however many tracks it holds."""
        segmenter = self._segment()
        with segmenter.lock:  # the predictor is the segmenter's: no other call decodes meanwhile
            masks = self._masks_locked(segmenter.predictor, frames, raw)
            segmenter.forget_image()  # its current image is no longer the cached one
        return masks

    @staticmethod
    def _masks_locked(
        predictor: Any, frames: np.ndarray, raw: dict[int, dict[str, list]]
    ) -> dict[int, list]:
        masks: dict[int, list] = {tid: [] for tid in raw}
        todo = sorted({t for tr in raw.values() for t in tr["frames"]})
        for at in range(0, len(todo), FRAME_BATCH):
            chunk = todo[at : at + FRAME_BATCH]
            for t, emb in zip(chunk, predictor.embed_images(frames[chunk]), strict=True):
                predictor.use_embedding(emb)
                here = [tid for tid, tr in raw.items() if t in tr["frames"]]
                boxes = np.array([raw[tid]["xyxy"][raw[tid]["frames"].index(t)] for tid in here])
                frame_masks, _ = predictor.predict_boxes(boxes)  # all tracks in one decoder pass
                for tid, m, box in zip(here, frame_masks, boxes, strict=True):
                    masks[tid].append(clip_to_box(m[None], box)[0])  # as segment's box prompts
        return masks

    @staticmethod
    def _matches(frames: np.ndarray, tr: dict[str, list], q: Any, names: list[str]) -> bool:
        label = names[max(set(tr["cls"]), key=tr["cls"].count)]
        if q.shape and label != q.shape:
            return False
        if q.color:
            t = tr["frames"][len(tr["frames"]) // 2]
            return color_in_box(frames[t], tr["xyxy"][len(tr["frames"]) // 2]) == q.color
        return True
