"""What the router sees: a vision tower, a projector into the LLM's embedding space, a region
encoder and a frame-index embedding for video.

- :class:`ShapeViT` is our own small ViT (trained on ShapeWorld in the ``align`` stage); any
  transformers vision tower (CLIP, SigLIP, …) by name or path is the alternative
  (:class:`HFVisionTower`). Both return patch features ``[B, N, D]`` on a ``g × g`` grid, row
  major (row = y), without a class token.
- :class:`Projector` pools the patch grid (``pool × pool`` average) and maps it with a two-layer
  MLP into the LLM's embedding width: the image tokens that replace ``<image>`` in the prompt.
- :class:`RegionEncoder` turns a user region (a mask ``[H, W]``, rows = y; or an XYXY box) into
  the one embedding that replaces ``<region>``: patch features pooled under the mask, plus a
  location embedding of the region's normalized XYXY box (Fourier features → MLP).
- :class:`FrameEmbedding` adds a learned frame-index vector to every token of a sampled frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from switchboard.core.errors import InvalidInputError
from torch import nn
from torch.nn import functional as F

# ImageNet statistics, as most vision towers expect.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


@dataclass
class ViTConfig:
    image_size: int = 256
    patch_size: int = 16  # 16 x 16 patches at 256 px
    width: int = 192
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 4.0
    # "patch": one strided conv (plain ViT); "detector": our trained detector's backbone and
    # neck, frozen, plus a small conv stem (DetectorStem)
    stem: str = "patch"
    detector_arch: str = "yolov8n.yaml"  # the "detector" stem's Ultralytics architecture
    detector_classes: int = 8
    detector: str = "detect-tiny"  # the "detector" stem's weights: a trained_models/ name or path

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def conv_stem(width: int, patch_size: int) -> nn.Sequential:
    """A convolutional stem (Xiao et al. 2021, "Early convolutions help transformers see
    better"): 3x3 stride-2 convolutions (GroupNorm, GELU) down to the patch grid, then a 1x1
    convolution to ``width`` channels."""
    k = int(math.log2(patch_size))
    if 2**k != patch_size or k < 1:
        raise ValueError("the conv stem needs a power-of-two patch_size")
    chans = [3] + [min(width, 24 * 2**i) for i in range(k)]
    layers: list[nn.Module] = []
    for cin, cout in zip(chans[:-1], chans[1:], strict=True):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.GroupNorm(min(8, cout), cout), nn.GELU()]
    return nn.Sequential(*layers, nn.Conv2d(chans[-1], width, 1))


class DetectorStem(nn.Module):
    """Patch features from our trained detector (YOLO on ShapeWorld, trained_models/detect-tiny),
    as LLaVA takes CLIP's: the backbone and neck up to the stride-16 output (P4, one cell per
    16 px patch) and the stride-8 output (P3) pooled to the same grid, frozen, beside a small
    trainable conv stem on the pixels (the detector was trained for shapes; colour is read
    here), mixed by a 1x1 convolution into the token width.

    Why: a plain ViT trained from scratch on 2 cores learnt colour but stayed at chance on shape
    (patch shape accuracy 0.165 after 27 min); the detector already tells the 8 shapes apart
    (mAP50 0.92 on the test split). :meth:`load_detector` copies its weights in."""

    def __init__(self, width: int, config: ViTConfig) -> None:
        super().__init__()
        from ultralytics.nn.tasks import DetectionModel

        if config.patch_size != 16:
            raise ValueError("the detector stem gives a stride-16 grid: use patch_size 16")
        from ultralytics.utils import LOGGER

        level = LOGGER.level
        LOGGER.setLevel("WARNING")  # not "Overriding model.yaml nc=80" on every load
        try:
            net = DetectionModel(config.detector_arch, nc=config.detector_classes, verbose=False)
        finally:
            LOGGER.setLevel(level)
        head = net.model[-1]
        self.detector = config.detector
        self.p3, self.p4 = int(head.f[0]), int(head.f[1])
        self.layers = nn.ModuleList(list(net.model)[: max(self.p3, self.p4) + 1])
        self.layers.requires_grad_(False).eval()
        with torch.no_grad():
            c3, c4 = (t.shape[1] for t in self._detector(torch.zeros(1, 3, 64, 64)))
        self.own = conv_stem(64, 16)
        self.mix = nn.Conv2d(c4 + c3 + 64, width, 1)
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    def _detector(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs: list[torch.Tensor] = []
        for m in self.layers:
            if m.f != -1:
                x = outs[m.f] if isinstance(m.f, int) else [x if j == -1 else outs[j] for j in m.f]
            x = m(x)
            outs.append(x)
        return outs[self.p3], outs[self.p4]

    def train(self, mode: bool = True) -> DetectorStem:
        super().train(mode)
        self.layers.eval()  # frozen: its batch norms keep the detector's statistics
        return self

    def detector_state(self, folder: str | Path | None = None) -> dict[str, torch.Tensor]:
        """The layers' share of a detector folder's weights (``model.safetensors``, keys
        ``model.<i>.…`` → ``<i>.…``), as stored; ``folder`` defaults to ``config.detector``."""
        from safetensors.torch import load_file

        from .objects import detector_path

        path = detector_path(folder or self.detector) / "model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"no detector weights at {path}")
        mine = {}
        for k, v in load_file(str(path)).items():
            _, i, rest = k.split(".", 2)
            if int(i) < len(self.layers):
                mine[f"{i}.{rest}"] = v
        return mine

    def load_detector(self, folder: str | Path | None = None) -> None:
        """Copy a detector folder's weights in (default: ``config.detector``)."""
        mine = {
            k: v.float() if v.is_floating_point() else v
            for k, v in self.detector_state(folder).items()
        }
        missing, _ = self.layers.load_state_dict(mine, strict=False)
        if missing:
            raise ValueError(
                f"the detector {folder or self.detector} does not fit: missing {missing[:5]}"
            )

    def is_detector_copy(self) -> bool:
        """Whether the frozen layers hold exactly ``config.detector``'s weights (then a saved
        router need not copy them: :meth:`load_detector` brings them back)."""
        try:
            ref = self.detector_state()
        except FileNotFoundError:
            return False
        own = self.layers.state_dict()
        return own.keys() == ref.keys() and all(
            torch.equal(v.to(ref[k].dtype), ref[k]) for k, v in own.items()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized pixels ``[B, 3, S, S]`` (like every stem's input) → ``[B, width, S/16,
        S/16]``; the detector gets them back in 0..1, as Ultralytics models take them."""
        with torch.no_grad():
            p3, p4 = self._detector(x * self.std + self.mean)
            p3 = F.avg_pool2d(p3, 2)
        return self.mix(torch.cat([p4, p3, self.own(x)], dim=1))


class ShapeViT(nn.Module):
    """A pre-norm ViT: a patchify (or convolutional) stem, learned positions, ``depth`` encoder
    blocks."""

    def __init__(self, config: ViTConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ViTConfig()
        if c.image_size % c.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if c.stem == "detector":
            self.patch: nn.Module = DetectorStem(c.width, c)
        elif c.stem == "patch":
            self.patch = nn.Conv2d(3, c.width, c.patch_size, c.patch_size)
        else:
            raise ValueError(f"unknown stem {c.stem!r}: 'patch' or 'detector'")
        self.pos = nn.Parameter(torch.randn(1, c.grid * c.grid, c.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            c.width,
            c.heads,
            int(c.width * c.mlp_ratio),
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.width)
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def width(self) -> int:
        return self.config.width

    @property
    def grid(self) -> int:
        return self.config.grid

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels`` ``[B, 3, S, S]`` in 0..1 → patch features ``[B, g*g, width]``."""
        x = self.patch((pixels - self.mean) / self.std).flatten(2).transpose(1, 2)
        return self.norm(self.blocks(x + self.pos))


class HFVisionTower(nn.Module):
    """Any transformers vision tower (``CLIPVisionModel``, ``SiglipVisionModel``, …) by hub id
    or local path, giving patch features like :class:`ShapeViT` (class token dropped)."""

    def __init__(self, name_or_path: str) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        cfg = AutoConfig.from_pretrained(name_or_path)
        vcfg = getattr(cfg, "vision_config", cfg)
        model = AutoModel.from_pretrained(name_or_path)
        self.model = getattr(model, "vision_model", model)
        self._image_size = int(vcfg.image_size)
        self._grid = self._image_size // int(vcfg.patch_size)
        self._width = int(vcfg.hidden_size)
        mean = getattr(vcfg, "image_mean", None) or PIXEL_MEAN
        std = getattr(vcfg, "image_std", None) or PIXEL_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    width = property(lambda self: self._width)
    grid = property(lambda self: self._grid)
    image_size = property(lambda self: self._image_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=(pixels - self.mean) / self.std).last_hidden_state
        return out[:, -self._grid * self._grid :]  # drop a class token if there is one


def to_pixels(images: np.ndarray | list[np.ndarray], size: int) -> torch.Tensor:
    """HWC uint8 RGB image(s) → ``[B, 3, size, size]`` float in 0..1 (bilinear resize)."""
    arr = np.asarray(images) if isinstance(images, np.ndarray) else np.stack(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InvalidInputError(f"expected HWC RGB image(s), got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class Projector(nn.Module):
    """Patch features ``[B, g*g, D]`` → image tokens ``[B, (g/pool)^2, d_llm]``."""

    def __init__(self, vision_width: int, llm_width: int, grid: int, pool: int = 2) -> None:
        super().__init__()
        if grid % pool:
            raise ValueError(f"grid {grid} is not divisible by pool {pool}")
        self.grid, self.pool = grid, pool
        self.mlp = nn.Sequential(
            nn.Linear(vision_width, llm_width), nn.GELU(), nn.Linear(llm_width, llm_width)
        )

    @property
    def num_tokens(self) -> int:
        return (self.grid // self.pool) ** 2

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, n, d = feats.shape
        if self.pool > 1:
            g = self.grid
            x = feats.transpose(1, 2).reshape(b, d, g, g)
            feats = F.avg_pool2d(x, self.pool).flatten(2).transpose(1, 2)
        return self.mlp(feats)


def fourier_box(boxes: torch.Tensor, bands: int = 8) -> torch.Tensor:
    """Normalized XYXY boxes ``[R, 4]`` (0..1) → sin/cos features ``[R, 4 * 2 * bands]``."""
    freqs = (2.0 ** torch.arange(bands, dtype=boxes.dtype, device=boxes.device)) * math.pi
    ang = boxes[..., None] * freqs  # [R, 4, bands]
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(1)


class RegionEncoder(nn.Module):
    """A user region → one token in the LLM's embedding space."""

    def __init__(self, vision_width: int, llm_width: int, bands: int = 8) -> None:
        super().__init__()
        self.bands = bands
        self.loc = nn.Sequential(nn.Linear(8 * bands, llm_width), nn.GELU())
        self.feat = nn.Linear(vision_width, llm_width)
        self.out = nn.Sequential(nn.GELU(), nn.Linear(llm_width, llm_width))

    @staticmethod
    def mask_weights(masks: torch.Tensor, grid: int) -> torch.Tensor:
        """Masks ``[R, H, W]`` (rows = y) → per-patch coverage ``[R, grid*grid]`` summing to 1."""
        cover = F.adaptive_avg_pool2d(masks.float()[:, None], grid).flatten(1)
        total = cover.sum(dim=1, keepdim=True)
        if (total <= 0).any():
            raise InvalidInputError("a region mask is empty")
        return cover / total

    def forward(
        self,
        feats: torch.Tensor,
        masks: torch.Tensor | list[torch.Tensor],
        boxes: torch.Tensor,
        grid: int,
    ) -> torch.Tensor:
        """``feats`` ``[R, g*g, D]`` (the patch features of each region's image), ``masks``
        ``[R, H, W]`` (or a list of ``[H, W]`` when images differ in size), ``boxes`` ``[R, 4]``
        normalized XYXY → region tokens ``[R, d_llm]``."""
        weights = torch.cat([self.mask_weights(m[None], grid) for m in masks]).to(feats)
        pooled = torch.einsum("rn,rnd->rd", weights, feats)
        return self.out(self.feat(pooled) + self.loc(fourier_box(boxes, self.bands)))


def region_from(
    height: int,
    width: int,
    mask: np.ndarray | None = None,
    box: tuple[float, float, float, float] | None = None,
    point: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A user region as (bool mask ``[H, W]``, normalized XYXY box ``[4]``), from a mask, an
    XYXY box or an XY click (a click becomes a small square around it). Coordinates are pixels,
    x along the width, y along the height."""
    given = sum(v is not None for v in (mask, box, point))
    if given != 1:
        raise InvalidInputError("a region is exactly one of: mask, box, point")
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        if m.shape != (height, width):
            raise InvalidInputError(f"region mask {m.shape} does not match image {height}x{width}")
        if not m.any():
            raise InvalidInputError("the region mask is empty")
        ys, xs = np.nonzero(m)
        xyxy = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
    else:
        if point is not None:
            x, y = point
            r = max(2.0, 0.02 * max(height, width))
            box = (x - r, y - r, x + r, y + r)
            if not (0 <= x < width and 0 <= y < height):
                raise InvalidInputError(f"point {point} is outside the {width}x{height} image")
        x0, y0, x1, y1 = (float(v) for v in box)
        if point is None and not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise InvalidInputError(f"box {box} is not XYXY inside the {width}x{height} image")
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(width), x1), min(float(height), y1)
        m = np.zeros((height, width), bool)
        m[int(y0) : max(int(y0) + 1, math.ceil(y1)), int(x0) : max(int(x0) + 1, math.ceil(x1))] = 1
        xyxy = np.array([x0, y0, x1, y1], float)
    return m, (xyxy / np.array([width, height, width, height])).astype(np.float32)


class FrameEmbedding(nn.Module):
    """A learned vector per sampled-frame index, added to that frame's image tokens."""

    def __init__(self, llm_width: int, max_frames: int = 8) -> None:
        super().__init__()
        self.max_frames = max_frames
        self.emb = nn.Embedding(max_frames, llm_width)
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, tokens: torch.Tensor, index: int) -> torch.Tensor:
        if not 0 <= index < self.max_frames:
            raise InvalidInputError(f"frame index {index} outside 0..{self.max_frames - 1}")
        return tokens + self.emb.weight[index]


def sample_frames(num_frames: int, k: int) -> list[int]:
    """``k`` frame indices spread evenly over a video (all of them when it is shorter)."""
    if num_frames < 1:
        raise InvalidInputError("the video has no frames")
    if num_frames <= k:
        return list(range(num_frames))
    return [int(round(i * (num_frames - 1) / (k - 1))) for i in range(k)] if k > 1 else [0]
