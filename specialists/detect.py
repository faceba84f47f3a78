"""detect: find objects by shape, colour or both ("all red objects", "circles", "the blue star").

Built on Ultralytics YOLO. The tiny profile loads a YOLOv8n trained from scratch on ShapeWorld
(``trained_models/detect-tiny``: fp16 safetensors + config.json, rebuilt from the architecture
YAML, so nothing is downloaded); the full profile loads any Ultralytics detection weights by path
(``SWITCHBOARD_DETECT_WEIGHTS``). Class names come from the model; colour words are read off the
pixels (:mod:`.colors`), so colour queries work with any detector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field
from switchboard.core import (
    Boxes,
    ExampleRequest,
    Image,
    NotFoundError,
    Specialist,
)
from switchboard.core.config import get_settings, models_dir
from switchboard.core.vocabulary import GENERIC_NOUNS

from .objects import list_objects
from .queries import Query, parse_query, select, unknown_noun

# Words that name no class: a shape filter of one of these keeps every class.
GENERIC_SHAPES = GENERIC_NOUNS


class DetectArgs(BaseModel):
    """What to find. ``query`` is free text ("red objects", "circles", "the blue star");
    ``shape``/``color`` filter explicitly. With neither, every object is returned."""

    query: str | None = Field(None, description="free-text description of what to find")
    shape: str | None = Field(None, description="class name to keep, e.g. 'circle'")
    color: str | None = Field(None, description="colour word to keep, e.g. 'red'")
    score_threshold: float = Field(0.35, ge=0.0, le=1.0)
    max_results: int = Field(100, ge=1, le=1000)


def load_yolo(weights: str | Path, fuse: bool = True) -> Any:
    """A YOLO model from a safetensors folder of ours or any Ultralytics ``.pt`` file.

    ``fuse`` folds batch norms into the convolutions (inference); keep them to train on."""
    from ultralytics import YOLO

    path = Path(weights)
    if path.is_dir():
        from safetensors.torch import load_file
        from ultralytics.nn.tasks import DetectionModel

        cfg = json.loads((path / "config.json").read_text())
        yolo = YOLO(cfg["arch"], task="detect")
        net = DetectionModel(cfg["arch"], nc=len(cfg["names"]), verbose=False)
        state = {
            k: v.float() if v.is_floating_point() else v
            for k, v in load_file(path / "model.safetensors").items()
        }
        net.load_state_dict(state)
        net.names = dict(enumerate(cfg["names"]))
        net.args = yolo.model.args
        yolo.model = net.fuse(verbose=False).eval() if fuse else net
        yolo.overrides["imgsz"] = cfg.get("imgsz", 640)
        return yolo
    if not path.is_file():
        raise FileNotFoundError(f"detector weights not found: {path}")
    return YOLO(str(path), task="detect")


class DetectSpecialist(Specialist):
    name = "detect"
    description = (
        "Find objects and return labelled boxes; filter by shape/class and colour "
        "('all red objects', 'circles', 'the blue star')."
    )
    tasks = ("detect", "count", "locate")
    Args = DetectArgs
    examples = (
        ExampleRequest(request="find all the {shape}s", args={"query": "{shape}s"}),
        ExampleRequest(request="where are the {color} shapes?", args={"query": "{color} shapes"}),
        ExampleRequest(request="detect the {color} {shape}", args={"query": "the {color} {shape}"}),
        ExampleRequest(request="detect every object", args={}),
    )

    @classmethod
    def args_for(cls, intent: Any) -> dict[str, Any] | None:
        if intent.task != "detect":
            return None
        args = {k: intent.params[k] for k in ("shape", "color") if k in intent.params}
        return args or ({"query": intent.target_text} if intent.target_text else None)

    def __init__(
        self, weights: str | Path | None = None, rename: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.weights = weights
        self.rename = rename  # class word → the word to use instead (None: from settings)
        self.model: Any = None

    def load(self, device: str = "cpu", dtype: Any = None) -> DetectSpecialist:
        settings = get_settings()
        weights = self.weights
        if weights is None:  # weights named in the settings serve any profile
            weights = settings.detect_weights or models_dir() / "detect-tiny"
        self.model = load_yolo(weights)
        self.imgsz = int(self.model.overrides.get("imgsz", 640))
        return super().load(device, dtype)

    def unload(self) -> None:
        self.model = None
        super().unload()

    @property
    def class_names(self) -> list[str]:
        """The classes' words: the weights' ``names``, renamed by ``rename`` (default the
        ``SWITCHBOARD_DETECT_NAMES`` setting)."""
        names = self.model.model.names
        rename = get_settings().detect_names if self.rename is None else self.rename
        return [rename.get(names[i], names[i]) for i in range(len(names))]

    def detect_all(
        self, image: np.ndarray, conf: float = 0.001, max_det: int = 300, agnostic: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw detections of one HWC uint8 RGB image: boxes ``[N, 4]`` XYXY, scores ``[N]``,
        class ids ``[N]``. ``agnostic``: one box per object whatever its class (NMS across
        classes), as the object list wants."""
        return self.detect_batch([image], conf, max_det, agnostic)[0]

    def detect_batch(
        self,
        images: Sequence[np.ndarray],
        conf: float = 0.001,
        max_det: int = 300,
        agnostic: bool = False,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`detect_all` for several images in one network batch (video frames)."""
        if len(images) == 0:
            return []
        threads = torch.get_num_threads()
        try:  # Ultralytics' predictor keeps per-call state: one prediction at a time
            with self.lock:
                results = self._predict(images, conf, max_det, agnostic)
        finally:  # Ultralytics' select_device sets torch to (cores - 1) threads: 1 of 2 here,
            if torch.get_num_threads() != threads:  # halving every model that runs after it
                torch.set_num_threads(threads)
        out = []
        for r in results:
            b = r.boxes
            xyxy, conf_, cls = b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy()
            out.append((xyxy, conf_, cls.astype(int)))
        return out

    def _predict(
        self, images: Sequence[np.ndarray], conf: float, max_det: int, agnostic: bool = False
    ) -> Any:
        return self.model.predict(
            [np.ascontiguousarray(im[..., ::-1]) for im in images],
            imgsz=self.imgsz,
            conf=conf,
            iou=0.6,
            agnostic_nms=agnostic,
            max_det=max_det,
            device=self.device or "cpu",
            verbose=False,
        )

    def query(self, args: DetectArgs) -> Query:
        if args.query and unknown_noun(args.query, self.class_names):
            raise NotFoundError(
                f"I can't find {args.query.strip()!r}: this detector knows {self.class_names}"
            )
        q = parse_query(args.query or "", self.class_names)
        if args.shape is not None:
            shape = args.shape.lower().strip()
            if shape not in self.class_names and shape.endswith("s"):  # "circles", "crosses"
                shape = next((c for c in (shape[:-1], shape[:-2]) if c in self.class_names), shape)
            if shape in GENERIC_SHAPES:  # "detect every object": no class filter
                shape = None
            elif shape not in self.class_names:
                raise NotFoundError(
                    f"I can't find {args.shape!r}: this detector knows {self.class_names}"
                )
            q.shape = shape or q.shape
        if args.color is not None:
            q.color = args.color.lower().strip()
        return q

    def run(self, media: Image, args: DetectArgs, signal: Any = None) -> Boxes:
        q = self.query(args)
        found = self.detect_all(media.pixels, conf=args.score_threshold, max_det=args.max_results)
        return self._answer(media.pixels, args, q, found)

    def run_many(self, calls: list[tuple[Image, DetectArgs, Any]]) -> list[Any]:
        """Several calls (a deployment's batch) in one network batch per (threshold, limit)
        pair; one call is :meth:`run`."""
        if len(calls) < 2:
            return super().run_many(calls)
        out: list[Any] = [None] * len(calls)
        groups: dict[tuple[float, int], list[tuple[int, Query]]] = {}
        for i, (_, args, _) in enumerate(calls):
            try:  # an unknown class word fails its call alone, before the network runs
                key = (args.score_threshold, args.max_results)
                groups.setdefault(key, []).append((i, self.query(args)))
            except Exception as exc:
                out[i] = exc
        for (conf, max_det), members in groups.items():
            images = [calls[i][0].pixels for i, _ in members]
            found = self.detect_batch(images, conf=conf, max_det=max_det)
            for (i, q), image, got in zip(members, images, found, strict=True):
                out[i] = self._answer(image, calls[i][1], q, got)
        return out

    def _answer(self, image: np.ndarray, args: DetectArgs, q: Query, found: Any) -> Boxes:
        """The boxes of the objects ``q`` asks for among the raw detections ``found``."""
        boxes, scores, cls = found
        objects = list_objects(image, boxes, scores, cls, self.class_names, args.max_results)
        hits = sorted(select(objects, q), key=lambda o: -o.score)
        labels = [" ".join(w for w in (o.color, o.label) if w) for o in hits]
        return Boxes(xyxy=[o.xyxy for o in hits], labels=labels, scores=[o.score for o in hits])
