"""Media the system accepts: still images (HWC uint8 RGB) and videos (frames + fps).

Every loader validates strictly and raises :class:`InvalidInputError` with a message that says
what was wrong and how to fix it. Nothing is silently converted unless the caller asks for it
with ``convert=True`` (grayscale, palette and alpha images become RGB; 16-bit images are scaled
to 8 bits).
"""

from __future__ import annotations

import base64
import io
import re
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator

from .config import get_settings
from .errors import InvalidInputError

ImageSource = str | Path | bytes | np.ndarray | PILImage.Image


def _check_pixels(height: int, width: int, max_pixels: int | None) -> None:
    limit = max_pixels if max_pixels is not None else get_settings().max_image_pixels
    if height <= 0 or width <= 0:
        raise InvalidInputError(f"image is empty ({width}x{height} pixels)")
    if height * width > limit:
        raise InvalidInputError(
            f"image is {width}x{height} = {height * width} pixels, above the limit of {limit} "
            "(SWITCHBOARD_MAX_IMAGE_PIXELS)"
        )


def validate_rgb_array(array: Any, max_pixels: int | None = None) -> np.ndarray:
    """Check that ``array`` is an HWC uint8 RGB image and return it C-contiguous."""
    if not isinstance(array, np.ndarray):
        raise InvalidInputError(f"expected a numpy array, got {type(array).__name__}")
    if array.ndim != 3 or array.shape[2] != 3:
        raise InvalidInputError(
            f"expected an HWC RGB array of shape (H, W, 3), got shape {tuple(array.shape)}; "
            "grayscale and RGBA must be converted by the caller (or load with convert=True)"
        )
    if array.dtype != np.uint8:
        raise InvalidInputError(f"expected dtype uint8, got {array.dtype}")
    _check_pixels(array.shape[0], array.shape[1], max_pixels)
    return np.ascontiguousarray(array)


def _to_rgb(img: PILImage.Image, convert: bool) -> np.ndarray:
    if img.mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if not convert:
        raise InvalidInputError(
            f"image mode is {img.mode!r}, expected 'RGB' (8-bit colour); "
            "pass convert=True to convert grayscale, palette, alpha or 16-bit images"
        )
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(img, dtype=np.int64)
        bits = 16 if img.mode.startswith("I;16") or wide.max(initial=0) > 255 else 8
        gray = np.clip(wide >> (bits - 8), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: transparent regions of icons and cut-outs read as background.
        rgba = img.convert("RGBA")
        canvas = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(PILImage.alpha_composite(canvas, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def pil_open() -> Any:
    """PIL's own ``Image.open``. Ultralytics replaces it process-wide (``ultralytics.utils.
    patches``) with a wrapper that, on bytes PIL cannot identify, tries to pip-install and
    import ``pi-heif`` — offline a ``ModuleNotFoundError`` instead of our typed error, online a
    package installed at run time. Its original is kept there as ``_image_open``."""
    fn = PILImage.open
    if getattr(fn, "__module__", "PIL.Image") != "PIL.Image":
        fn = getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", fn)
    return fn


class UnreadableImageError(InvalidInputError):
    """Bytes that do not decode as an image: not an image at all, or a damaged one."""


def decode_image(
    data: bytes, *, convert: bool = False, max_pixels: int | None = None
) -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, WebP, ...) into HWC uint8 RGB."""
    if not data:
        raise InvalidInputError("image data is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            img = pil_open()(io.BytesIO(data))
            # The header gives the size before any pixel is decoded: refuse huge images cheaply.
            _check_pixels(img.height, img.width, max_pixels)
            img.load()
    except InvalidInputError:
        raise
    except UnidentifiedImageError as exc:  # PIL's message names its BytesIO: never shown
        raise UnreadableImageError(
            f"cannot decode image data ({len(data)} bytes): not an image in a format I can read "
            "(PNG, JPEG, WebP, GIF, BMP, …)"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImageError(
            f"cannot decode image data ({len(data)} bytes): {_reason(exc)}"
        ) from exc
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise InvalidInputError(f"image refused as a decompression bomb: {exc}") from exc
    return _to_rgb(img, convert)


def load_image(
    source: ImageSource, *, convert: bool = False, max_pixels: int | None = None
) -> np.ndarray:
    """Load an image from a path, encoded bytes, an HWC uint8 RGB array or a PIL image.

    Returns an HWC uint8 RGB array. Raises :class:`InvalidInputError` for anything else.
    """
    if isinstance(source, np.ndarray):
        return validate_rgb_array(source, max_pixels)
    if isinstance(source, PILImage.Image):
        _check_pixels(source.height, source.width, max_pixels)
        return _to_rgb(source, convert)
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_image(bytes(source), convert=convert, max_pixels=max_pixels)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"image file not found: {path}")
        return decode_image(path.read_bytes(), convert=convert, max_pixels=max_pixels)
    raise InvalidInputError(f"cannot load an image from {type(source).__name__}")


def encode_png(array: np.ndarray) -> bytes:
    """Encode an HWC uint8 RGB (or HW uint8/bool) array as PNG bytes."""
    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _image_validator(value: Any) -> np.ndarray:
    if isinstance(value, str):  # base64 PNG, as written by the serializer below
        try:
            value = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise InvalidInputError("image string is not base64") from exc
    return load_image(value)


def _image_serializer(value: np.ndarray) -> str:
    return base64.b64encode(encode_png(value)).decode("ascii")


# An HWC uint8 RGB array field; JSON form is a base64 PNG.
RGBArray = Annotated[
    np.ndarray,
    PlainValidator(_image_validator),
    PlainSerializer(_image_serializer, when_used="json"),
]


class Image(BaseModel):
    """A still image: ``pixels`` is HWC uint8 RGB."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    pixels: RGBArray

    @classmethod
    def load(cls, source: ImageSource, *, convert: bool = False) -> Image:
        return cls(pixels=load_image(source, convert=convert))

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


class Video(BaseModel):
    """A video: ``frames`` is THWC uint8 RGB, ``fps`` frames per second."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    frames: np.ndarray
    fps: float = Field(gt=0, le=1000)

    def model_post_init(self, __context: Any) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray) or f.ndim != 4 or f.shape[3] != 3:
            shape = getattr(f, "shape", None)
            raise InvalidInputError(f"video frames must be a (T, H, W, 3) array, got {shape}")
        if f.dtype != np.uint8:
            raise InvalidInputError(f"video frames must be uint8, got {f.dtype}")
        if f.shape[0] == 0:
            raise InvalidInputError("video has no frames")
        settings = get_settings()
        if f.shape[0] > settings.max_video_frames:
            raise InvalidInputError(
                f"video has {f.shape[0]} frames, above the limit of {settings.max_video_frames} "
                "(SWITCHBOARD_MAX_VIDEO_FRAMES)"
            )
        _check_pixels(f.shape[1], f.shape[2], None)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


VIDEO_SUFFIXES = {".mp4", ".gif", ".avi", ".mov", ".webm", ".mkv"}
# Upload media types of videos and the file suffix each is read with (the HTTP API and Client).
VIDEO_MEDIA_TYPES = {"video/mp4": ".mp4", "video/webm": ".webm", "video/x-msvideo": ".avi",
                     "video/quicktime": ".mov", "image/gif": ".gif"}  # fmt: skip


def load_video(source: str | Path | np.ndarray | Video, *, fps: float | None = None) -> Video:
    """Load a video from a file (mp4, gif, ...), a folder of frame images, a THWC array or a
    :class:`Video` (returned as it is)."""
    if isinstance(source, Video):
        return source
    if isinstance(source, np.ndarray):
        return Video(frames=source, fps=fps or 10.0)
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
        if not files:
            raise InvalidInputError(f"frame folder has no .png/.jpg frames: {path}")
        frames = [load_image(p) for p in files]
        if len({f.shape for f in frames}) != 1:
            raise InvalidInputError(f"frames in {path} differ in size")
        return Video(frames=np.stack(frames), fps=fps or 10.0)
    if not path.is_file():
        raise InvalidInputError(f"video file not found: {path}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InvalidInputError(
            f"unsupported video type {path.suffix!r}: use one of {sorted(VIDEO_SUFFIXES)}"
        )
    import imageio.v3 as iio

    try:
        meta = iio.immeta(path)
    except Exception as exc:  # imageio raises many backend-specific types for corrupt files
        raise InvalidInputError(f"cannot decode video {_shown(path)}: {_reason(exc)}") from exc
    frames = _decode_frames(path, meta)
    rate = fps or meta.get("fps") or (1000.0 / meta["duration"] if meta.get("duration") else 10.0)
    return Video(frames=frames, fps=float(rate))


def _shown(path: str | Path) -> str:
    """A file as an error names it: its name, or "the upload" for a temporary file."""
    base = Path(path).name
    return "the upload" if base.startswith("tmp") else base


def _reason(exc: BaseException) -> str:
    """A decoder's error as one short line a client may read: its first line, file paths cut
    to their names, at most 160 characters (ffmpeg's errors carry its whole build
    configuration and the temporary file's path; a temporary file is "the upload")."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__

    first = re.sub(r"(?:[A-Za-z]:)?(?:[\\/][^\s:'\"\\/]+)+", lambda m: _shown(m[0]), first)
    return first if len(first) <= 160 else first[:157] + "…"


def _decode_frames(path: Path, meta: dict[str, Any]) -> np.ndarray:
    """A video file's frames ``[T, H, W, 3]``, within the frame count, pixel and decoded-size
    limits: what the file says of its size and length is checked before any frame is decoded,
    and the frames themselves as they come (a file may understate them). Frames go into one
    array as they are decoded, not a list stacked afterwards (which would hold them twice)."""
    import imageio.v3 as iio

    settings = get_settings()
    limit, budget = settings.max_video_frames, settings.max_video_mb * 2**20
    over = (
        f"decodes to more than {settings.max_video_mb} MB of frames "
        "(SWITCHBOARD_MAX_VIDEO_MB); send a shorter or smaller clip"
    )
    size, fps, duration = meta.get("size"), meta.get("fps"), meta.get("duration")
    expected = 0
    if size and len(size) == 2:
        w, h = int(size[0]), int(size[1])
        _check_pixels(h, w, None)
        if fps and duration and np.isfinite(fps * duration):
            expected = int(np.ceil(float(fps) * float(duration)))
            if expected > limit:
                raise InvalidInputError(
                    f"video has about {expected} frames, above the limit of "
                    f"{limit} (SWITCHBOARD_MAX_VIDEO_FRAMES)"
                )
            if expected * h * w * 3 > budget:
                raise InvalidInputError(
                    f"video {_shown(path)} ({expected} frames of {w}x{h}) " + over
                )
    out: np.ndarray | None = None
    n = 0
    try:
        for i, frame in enumerate(iio.imiter(path)):
            if i >= limit:
                raise InvalidInputError(f"video has more than {limit} frames")
            f = np.asarray(frame)
            if f.ndim == 2:
                f = np.repeat(f[..., None], 3, axis=2)
            f = f[..., :3]
            if out is None:
                _check_pixels(f.shape[0], f.shape[1], None)
                out = np.empty((max(expected, 1), *f.shape[:2], 3), np.uint8)
            elif f.shape[:2] != out.shape[1:3]:
                raise InvalidInputError(f"frame {i} of {_shown(path)} differs in size")
            if (i + 1) * f.nbytes > budget:
                raise InvalidInputError(f"video {_shown(path)} " + over)
            if i >= len(out):  # longer than the file said: grow by half
                grown = np.empty((len(out) + len(out) // 2 + 1, *out.shape[1:]), np.uint8)
                grown[: len(out)] = out
                out = grown
            out[i] = f
            n = i + 1
    except InvalidInputError:
        raise
    except Exception as exc:  # imageio raises many backend-specific types for corrupt files
        raise InvalidInputError(f"cannot decode video {_shown(path)}: {_reason(exc)}") from exc
    if out is None or n == 0:
        raise InvalidInputError(f"video {_shown(path)} has no frames")
    return out[:n] if n == len(out) else out[:n].copy()


def encode_mp4(video: Video) -> bytes:
    """A video as mp4 bytes (H.264 at its fps)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return save_video(video, Path(tmp) / "video.mp4").read_bytes()


_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,(.*)$", re.S)


def decode_base64(value: Any, what: str = "the data") -> tuple[str | None, bytes]:
    """``(media type or None, bytes)`` of a base64 ``data:`` URL or of bare base64;
    :class:`InvalidInputError` for anything else (a data URL that is not base64, bad base64)."""
    import binascii

    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what} must be a base64 string or a data: URL")
    kind = None
    if value.startswith("data:"):
        found = _DATA_URL.match(value)
        if found is None or not found.group(3):
            raise InvalidInputError(
                f"{what} is not a base64 data URL (data:<media type>;base64,<data>)"
            )
        kind, value = (found.group(1) or "").lower() or None, found.group(4)
    try:
        return kind, base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{what} is not valid base64") from None


def save_video(video: Video, path: str | Path) -> Path:
    """Write a video as mp4, gif, or a folder of PNG frames (a path without a suffix)."""
    import imageio.v3 as iio

    path = Path(path)
    if path.suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(video.frames):
            (path / f"{i:06d}.png").write_bytes(encode_png(frame))
        return path
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, video.frames, duration=1000.0 / video.fps, loop=0)
    elif path.suffix.lower() == ".mp4":
        iio.imwrite(path, video.frames, fps=video.fps, codec="libx264", macro_block_size=1)
    else:
        raise InvalidInputError(
            f"cannot write video type {path.suffix!r}: use .mp4, .gif or a folder"
        )
    return path
