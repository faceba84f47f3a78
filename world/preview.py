"""A contact sheet of ShapeWorld with ground-truth overlays, for a person to check by eye.

Rows: scenes (visible-mask outlines, boxes, labels, caption, one referring expression), a video
(frames with track boxes and ids), and edit pairs (before, after, edit mask).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .edits import EDIT_OPS, generate_edit
from .language import caption, referring_expressions
from .scene import Scene, generate_scene
from .video import generate_video

TILE = 256
TEXT_H = 44
# One outline colour per object index, distinct from the fill palette (dark and light).
OUTLINE = [
    (255, 255, 255),
    (0, 0, 0),
    (255, 0, 255),
    (0, 255, 0),
    (255, 255, 0),
    (0, 255, 255),
    (128, 0, 0),
    (0, 0, 128),
]


def _font(size: int = 11) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def _wrap(text: str, width: int = 44) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join([*lines, line][:3])


def overlay(
    image: np.ndarray, masks: np.ndarray, boxes: np.ndarray, labels: list[str]
) -> Image.Image:
    """Image with each visible mask outlined, its box drawn and labelled."""
    out = image.copy()
    for k, m in enumerate(masks):
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, OUTLINE[k % len(OUTLINE)], 1)
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    font = _font(10)
    for k, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 <= x1:
            continue
        color = OUTLINE[k % len(OUTLINE)]
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=color)
        draw.text((x1 + 1, max(y1 - 11, 0)), label, fill=color, font=font)
    return pil


def _tile(img: Image.Image, text: str) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE + TEXT_H), (255, 255, 255))
    tile.paste(img.resize((TILE, TILE), Image.NEAREST), (0, 0))
    ImageDraw.Draw(tile).multiline_text((3, TILE + 2), _wrap(text), fill=(0, 0, 0), font=_font(11))
    return tile


def _scene_tile(scene: Scene) -> Image.Image:
    labels = [f"{o.id}:{o.color} {o.shape}" for o in scene.objects]
    refs = referring_expressions(scene)
    ref = next((r for r in refs if r.kind != "attribute"), refs[0] if refs else None)
    text = caption(scene) + (f" | '{ref.text}' -> {ref.target}" if ref else "")
    return _tile(overlay(scene.image, scene.masks, scene.boxes, labels), text)


def contact_sheet(seed: int = 0, scenes: int = 8, size: int = 256) -> Image.Image:
    """The whole sheet, deterministic by ``seed``."""
    rows: list[list[Image.Image]] = []
    tiles = [_scene_tile(generate_scene(seed + k, size=size)) for k in range(scenes)]
    rows += [tiles[i : i + 4] for i in range(0, len(tiles), 4)]
    clip = generate_video(seed)
    frames = []
    for t in np.linspace(0, clip.num_frames - 1, 4).astype(int):
        keep = clip.present[t]
        labels = [f"#{o.id} {o.shape}" for o, k in zip(clip.objects, keep, strict=True) if k]
        img = overlay(clip.frames[t], clip.masks[t][keep], clip.boxes[t][keep], labels)
        frames.append(_tile(img, f"video frame {t}: " + ", ".join(clip.motions)))
    rows.append(frames)
    for ops in EDIT_OPS[:2], EDIT_OPS[2:4], EDIT_OPS[4:]:
        row = []
        for name in ops:
            pair = generate_edit(seed + EDIT_OPS.index(name), name, size=size)
            row += [
                _tile(Image.fromarray(pair.before.image), f"{name} {pair.params}: before"),
                _tile(Image.fromarray(pair.after.image), f"{name}: after"),
            ]
        rows.append(row)
    width = max(len(r) for r in rows) * TILE
    sheet = Image.new("RGB", (width, len(rows) * (TILE + TEXT_H)), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * TILE, r * (TILE + TEXT_H)))
    return sheet


def write_contact_sheet(out: str | Path, seed: int = 0, scenes: int = 8) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(seed, scenes).save(out)
    return out
