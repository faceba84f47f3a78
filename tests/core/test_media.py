import io

import numpy as np
import pytest
from PIL import Image as PILImage
from switchboard.core import Image, InvalidInputError, Video, load_image, load_video, save_video
from switchboard.core.media import decode_image, encode_png


def _png(mode: str, size=(8, 6), value=100) -> bytes:
    buf = io.BytesIO()
    PILImage.new(mode, size, value).save(buf, format="PNG")
    return buf.getvalue()


def test_loads_from_path_bytes_array_and_pil(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    path.write_bytes(encode_png(arr))
    for source in (path, str(path), path.read_bytes(), arr, PILImage.fromarray(arr)):
        out = load_image(source)
        assert out.shape == (6, 8, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("data", [b"", b"not an image at all", _png("RGB")[:40]])
def test_corrupt_or_empty_bytes_raise_typed_error(data):
    with pytest.raises(InvalidInputError):
        decode_image(data)


def test_corrupt_bytes_stay_a_typed_error_after_ultralytics_patches_pil():
    """Importing Ultralytics (the detect/track specialists do) replaces ``PIL.Image.open`` with a
    wrapper that tries to install pi-heif on unreadable bytes; decoding must not go through it."""
    import ultralytics.utils.patches  # noqa: F401
    from PIL import Image

    assert Image.open.__module__ != "PIL.Image"  # the patch is in place
    for data in (b"not an image at all", _png("RGB")[:40]):
        with pytest.raises(InvalidInputError):
            decode_image(data)
    assert decode_image(_png("RGB")).shape[-1] == 3


@pytest.mark.parametrize(
    "mode,value", [("L", 100), ("RGBA", (1, 2, 3, 4)), ("I;16", 40000), ("P", 3)]
)
def test_non_rgb_modes_are_refused_unless_converted(mode, value):
    data = _png(mode, value=value)
    with pytest.raises(InvalidInputError, match="convert=True"):
        load_image(data)
    out = load_image(data, convert=True)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8


def test_sixteen_bit_conversion_scales_to_eight_bits():
    out = load_image(_png("I;16", value=40000), convert=True)
    assert out[0, 0, 0] == 40000 >> 8


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.uint16),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((4, 4, 3), np.float32),
    ],
)
def test_bad_arrays_raise(arr):
    with pytest.raises(InvalidInputError):
        load_image(arr)


def test_oversized_image_refused_before_decoding(monkeypatch):
    from switchboard.core import config

    data = _png("RGB", size=(300, 200))
    with pytest.raises(InvalidInputError, match="limit"):
        load_image(data, max_pixels=300 * 200 - 1)
    monkeypatch.setenv("SWITCHBOARD_MAX_IMAGE_PIXELS", "1000")
    config.get_settings.cache_clear()
    try:
        with pytest.raises(InvalidInputError, match="SWITCHBOARD_MAX_IMAGE_PIXELS"):
            load_image(data)
    finally:
        config.get_settings.cache_clear()


def test_missing_file_and_wrong_type():
    with pytest.raises(InvalidInputError, match="not found"):
        load_image("/nonexistent/x.png")
    with pytest.raises(InvalidInputError):
        load_image(12345)  # type: ignore[arg-type]


def test_image_model_json_roundtrip():
    arr = np.random.default_rng(1).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    img = Image(pixels=arr)
    back = Image.model_validate_json(img.model_dump_json())
    np.testing.assert_array_equal(back.pixels, arr)
    assert (img.width, img.height) == (7, 5)


@pytest.mark.parametrize("suffix", [".gif", ".mp4", ""])
def test_video_roundtrip(tmp_path, suffix):
    from switchboard.world import generate_video

    clip = generate_video(1, size=64, num_frames=6)
    video = Video(frames=clip.frames, fps=8)
    path = save_video(video, tmp_path / f"clip{suffix}")
    back = load_video(path)
    assert back.frames.shape == clip.frames.shape
    if suffix != ".mp4":  # mp4 is lossy
        np.testing.assert_array_equal(back.frames, clip.frames)
    else:
        assert np.abs(back.frames.astype(int) - clip.frames.astype(int)).mean() < 8


def test_bad_videos_raise(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(InvalidInputError) as refused:
        load_video(bad)
    # One short line naming the file: no ffmpeg build configuration, no temporary path.
    said = str(refused.value)
    assert said.startswith("cannot decode video bad.mp4: ") and "\n" not in said
    assert str(tmp_path) not in said and "configuration" not in said and len(said) < 240
    # An upload's temporary file is "the upload", not its random name.
    upload = tmp_path / "tmpk3j_x9a1.mp4"
    upload.write_bytes(b"\x00" * 100)
    with pytest.raises(InvalidInputError, match="^cannot decode video the upload: ") as refused:
        load_video(upload)
    assert "tmpk3j" not in str(refused.value)
    txt = tmp_path / "x.txt"
    txt.write_text("hello")
    with pytest.raises(InvalidInputError, match="unsupported"):
        load_video(txt)
    with pytest.raises(InvalidInputError):
        Video(frames=np.zeros((0, 4, 4, 3), np.uint8), fps=5)
    with pytest.raises(InvalidInputError):
        Video(frames=np.zeros((2, 4, 4), np.uint8), fps=5)


def test_a_video_object_loads_as_itself():
    import numpy as np
    from switchboard.core.media import Video, load_video

    video = Video(frames=np.zeros((3, 8, 8, 3), np.uint8), fps=5)
    assert load_video(video) is video


def test_a_small_video_file_of_huge_frames_is_refused_before_it_fills_memory(tmp_path, monkeypatch):
    """A few KB of mp4 can hold hundreds of 720p frames: what the file says of its length
    and size is checked before decoding, and the decoded size frame by frame."""
    import resource

    import imageio.v3 as iio
    from switchboard.core.config import get_settings

    path = tmp_path / "black.mp4"
    iio.imwrite(
        path, np.zeros((40, 720, 1280, 3), np.uint8), fps=10, codec="libx264", macro_block_size=1
    )
    assert path.stat().st_size < 20_000
    monkeypatch.setenv("SWITCHBOARD_MAX_VIDEO_MB", "64")
    get_settings.cache_clear()
    try:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(InvalidInputError, match="40 frames of 1280x720.*MAX_VIDEO_MB"):
            load_video(path)
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 50_000  # KiB
        # A file that states no length (a GIF) is stopped while decoding, at the budget.
        gif = tmp_path / "big.gif"
        frames = np.zeros((12, 1000, 1500, 3), np.uint8)
        frames[np.arange(12), :, np.arange(12) * 100] = 255  # distinct frames, kept apart
        iio.imwrite(gif, frames, duration=100, loop=0)
        monkeypatch.setenv("SWITCHBOARD_MAX_VIDEO_MB", "20")
        get_settings.cache_clear()
        with pytest.raises(InvalidInputError, match="more than 20 MB of frames"):
            load_video(gif)
        monkeypatch.setenv("SWITCHBOARD_MAX_IMAGE_PIXELS", "500000")
        get_settings.cache_clear()
        with pytest.raises(InvalidInputError, match="above the limit of 500000"):
            load_video(path)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
