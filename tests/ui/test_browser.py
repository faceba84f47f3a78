"""The page in a real browser: Playwright drives Debian's chromium against ``switchboard serve``'s
app over the real default agent (trained router, SAM, detector, editor, tracker) on loopback.

Upload a ShapeWorld image, draw a box, ask to segment it → the mask overlay; recolour an object →
before/after; upload a ShapeWorld video, ask to track → boxes drawn over the playing video;
reload the page, and restart the server → the session is listed and reopens with its overlay.
Screenshots go to ``runs/test-artifacts/browser/`` (CI keeps them as artifacts).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from switchboard.core.media import Video, encode_png, save_video
from switchboard.world.scene import generate_scene
from switchboard.world.video import generate_video

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("SWITCHBOARD_TEST_ARTIFACTS", "runs/test-artifacts")) / "browser"
TOKEN = "browser-token"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
TURN_MS = 120_000

pytestmark = pytest.mark.slow


class Server:
    """uvicorn serving ``create_app`` over a real default Agent in a thread, on a free port."""

    def __init__(self, home: Path) -> None:
        import uvicorn
        from switchboard.agent import Agent
        from switchboard.ui.server import create_app

        self.agent = Agent.load(home=home)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(create_app(self.agent, tokens=[TOKEN]), host="127.0.0.1",
                                port=self.port, log_level="warning")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("browser-home")


@pytest.fixture(scope="module")
def server(home):
    srv = Server(home)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs Debian's chromium (apt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(f"localStorage.setItem('switchboard.token', '{TOKEN}')")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("uploads")
    scene = generate_scene(5)
    (root / "scene.png").write_bytes(encode_png(scene.image))
    clip = generate_video(3)
    save_video(Video(frames=clip.frames, fps=clip.fps), root / "clip.mp4")
    return {"scene": scene, "image": root / "scene.png", "clip": clip, "video": root / "clip.mp4"}


def _attach(page, path: Path) -> None:
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#stage-canvas[data-ready='1']")


def _drag_box(page, box: list[float]) -> None:
    """Draw ``box`` (image pixels) on the stage with the mouse."""
    page.check("input[name=tool][value=box]")
    canvas = page.locator("#stage-canvas")
    rect = canvas.bounding_box()
    w, h = page.evaluate("[document.querySelector('#stage-canvas').width, "
                         "document.querySelector('#stage-canvas').height]")  # fmt: skip
    sx, sy = rect["width"] / w, rect["height"] / h
    page.mouse.move(rect["x"] + box[0] * sx, rect["y"] + box[1] * sy)
    page.mouse.down()
    page.mouse.move(rect["x"] + (box[0] + box[2]) / 2 * sx, rect["y"] + (box[1] + box[3]) / 2 * sy)
    page.mouse.move(rect["x"] + box[2] * sx, rect["y"] + box[3] * sy)
    page.mouse.up()


def _ask(page, text: str) -> None:
    before = page.locator(".bubble.assistant[data-status='done']").count()
    page.fill("#text", text)
    page.click("#send")
    page.wait_for_function(
        f"document.querySelectorAll(\".bubble.assistant[data-status='done']\").length > {before}",
        timeout=TURN_MS,
    )


def _overlay_pixels(page, selector: str, box: list[float] | None = None) -> tuple[int, int]:
    """Coloured pixels of an overlay canvas: (inside ``box``, everywhere)."""
    return tuple(page.evaluate(
        """([sel, box]) => {
            const c = document.querySelector(sel);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let inside = 0, all = 0;
            for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
                if (d[(y * c.width + x) * 4 + 3] === 0) continue;
                all++;
                if (box && x >= box[0] && x <= box[2] && y >= box[1] && y <= box[3]) inside++;
            }
            return [inside, all];
        }""",
        [selector, box],
    ))  # fmt: skip


def test_segment_a_drawn_box_shows_the_mask_overlay(server, page, files):
    page.goto(server.url)
    _attach(page, files["image"])
    box = [float(v) for v in files["scene"].boxes[0]]
    _drag_box(page, box)
    drawn = page.evaluate("JSON.parse(JSON.stringify(state.region))")["box"]
    assert np.allclose(drawn, box, atol=2), (drawn, box)
    _ask(page, "segment this")
    turn = page.locator(".bubble.assistant").last
    overlay = turn.locator("canvas.overlay")
    overlay.wait_for()
    assert overlay.get_attribute("data-masks") == "1"
    assert turn.locator(".trace td.tool").first.inner_text() == "segment"
    inside, total = _overlay_pixels(page, ".bubble.assistant:last-of-type canvas.overlay",
                                    [box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2])  # fmt: skip
    assert total > 50 and inside / total > 0.95, (inside, total)
    turn.locator("input.mask-toggle").uncheck()  # the toggle hides the mask
    assert overlay.get_attribute("data-masks") == "0"
    assert _overlay_pixels(page, ".bubble.assistant:last-of-type canvas.overlay")[1] == 0
    turn.locator("input.mask-toggle").check()
    assert page.locator("#sessions li.session.active").count() == 1


def _sketch_round(page, box: list[float], grow: float = 5) -> None:
    """A free-hand outline round ``box`` (image pixels), drawn with the mouse."""
    page.check("input[name=tool][value=sketch]")
    rect = page.locator("#stage-canvas").bounding_box()
    w = page.evaluate("document.querySelector('#stage-canvas').width")
    scale = rect["width"] / w
    x1, y1, x2, y2 = box[0] - grow, box[1] - grow, box[2] + grow, box[3] + grow
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    outline = [(x1, cy), (x1, y1), (cx, y1 - 2), (x2, y1), (x2, cy), (x2, y2), (cx, y2 + 2),
               (x1, y2), (x1, cy + 1)]  # fmt: skip
    page.mouse.move(rect["x"] + outline[0][0] * scale, rect["y"] + outline[0][1] * scale)
    page.mouse.down()
    for x, y in outline[1:]:
        page.mouse.move(rect["x"] + x * scale, rect["y"] + y * scale, steps=3)
    page.mouse.up()


def test_sketch_detect_and_generate(server, page, files):
    page.goto(server.url)
    page.click("#new-session")
    _attach(page, files["image"])
    scene = files["scene"]
    k = int(np.argmax([m.sum() for m in scene.masks]))
    box = [float(v) for v in scene.boxes[k]]
    _sketch_round(page, box)
    assert page.locator("#region-label").inner_text() == "sketch"
    _ask(page, "segment this")
    overlay = page.locator(".bubble.assistant").last.locator("canvas.overlay")
    overlay.wait_for()
    assert overlay.get_attribute("data-masks") == "1"
    grown = [box[0] - 6, box[1] - 6, box[2] + 6, box[3] + 6]
    inside, total = _overlay_pixels(page, ".bubble.assistant:last-of-type canvas.overlay", grown)
    assert total > 50 and inside / total > 0.95, (inside, total)
    args = page.locator(".bubble.assistant").last.locator(".trace code").inner_text()
    assert '"mask"' in args and "target" not in args  # the sketch went to SAM as a mask prompt

    circles = sum(o.shape == "circle" for o in scene.objects)
    _ask(page, "can you find the circles?")  # the image stays attached
    turn = page.locator(".bubble.assistant").last
    overlay = turn.locator("canvas.overlay")
    overlay.wait_for()
    assert int(overlay.get_attribute("data-boxes")) == circles
    assert turn.locator(".trace td.tool").first.inner_text() == "detect"
    assert turn.locator("a.download", has_text="results.json").count() == 1

    page.click("#remove-file")
    _ask(page, "draw a red star and a green circle")
    image = page.locator(".bubble.assistant").last.locator("figure.generated img")
    image.wait_for()
    assert image.evaluate("i => i.complete && i.naturalWidth") == 256


def test_recolour_shows_before_and_after(server, page, files):
    page.goto(server.url)
    page.click("#new-session")
    _attach(page, files["image"])
    obj = files["scene"].objects[1]
    _ask(page, f"make the {obj.color} {obj.shape} yellow")
    view = page.locator(".bubble.assistant").last.locator("figure.before-after")
    view.wait_for()
    assert view.get_attribute("data-before") != view.get_attribute("data-after")
    sizes = view.locator("img").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert sizes == [256, 256], sizes
    changed = page.evaluate(
        """async () => {
            const imgs = [...document.querySelectorAll('.before-after img')].slice(-2);
            const px = imgs.map(img => {
                const c = document.createElement('canvas');
                c.width = img.naturalWidth; c.height = img.naturalHeight;
                const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
                return ctx.getImageData(0, 0, c.width, c.height).data;
            });
            let n = 0;
            for (let i = 0; i < px[0].length; i += 4) if (px[0][i] !== px[1][i] ||
                px[0][i + 1] !== px[1][i + 1] || px[0][i + 2] !== px[1][i + 2]) n++;
            return n;
        }"""
    )
    assert changed > 100, changed  # the recoloured object's pixels differ
    view.locator("input.split").fill("90")  # the slider moves the cut
    assert "90%" in view.locator(".after").evaluate("e => e.style.clipPath")
    view.locator("input.split").fill("50")


def test_track_a_video_draws_the_track(server, page, files):
    page.goto(server.url)
    page.click("#new-session")
    _attach(page, files["video"])
    clip = files["clip"]
    n = int(np.flatnonzero(clip.present.all(axis=0))[0])  # an object on every frame
    obj = clip.objects[n]
    _ask(page, f"track the {obj.color} {obj.shape}")
    view = page.locator(".bubble.assistant").last.locator("figure.track-view")
    view.wait_for()
    canvas = view.locator("canvas.tracks")
    video = view.locator("video")
    video.evaluate(
        "v => new Promise(r => v.readyState >= 2 ? r() : v.addEventListener('loadeddata', r))"
    )
    frame = clip.num_frames // 2
    video.evaluate(
        f"v => new Promise(r => {{ v.addEventListener('seeked', r, {{once: true}}); "
        f"v.currentTime = {(frame + 0.5) / clip.fps}; }})"
    )
    page.wait_for_function(
        "f => document.querySelector('.track-view:last-of-type canvas.tracks')?.dataset.frame == f",
        arg=str(frame),
    )
    assert int(canvas.get_attribute("data-boxes")) >= 1
    truth = [float(v) for v in clip.boxes[frame, n]]
    near = [truth[0] - 8, truth[1] - 30, truth[2] + 8, truth[3] + 8]  # the label sits above
    inside, total = _overlay_pixels(page, ".track-view canvas.tracks", near)
    assert total > 0 and inside / total > 0.6, (inside, total)
    assert view.locator(".legend li").count() >= 1
    video.evaluate("v => v.play()")  # plays, and the boxes follow the frames
    page.wait_for_function(
        "f => document.querySelector('.track-view canvas.tracks').dataset.frame != f",
        arg=str(frame),
    )


def test_reload_and_restart_find_the_session(server, page, files, home):
    page.goto(server.url)
    page.wait_for_selector("#sessions li.session")
    titles = page.locator("#sessions li .title").all_inner_texts()
    assert "segment this" in titles, titles
    first = page.locator("#sessions li", has_text="segment this").filter(has_text="1 turn")
    first.click()  # the box test's session (the sketch test's has 3 turns)
    page.wait_for_selector(".bubble.assistant canvas.overlay[data-masks='1']")
    url = page.url
    assert "#session=" in url
    page.reload()  # the URL reopens the session
    page.wait_for_selector(".bubble.assistant canvas.overlay[data-masks='1']")

    server.stop()  # a new process on the same home: the store keeps every session
    again = Server(home)
    try:
        page.goto(again.url + "#session=" + url.split("#session=")[1])
        page.wait_for_selector(".bubble.assistant canvas.overlay[data-masks='1']")
        page.wait_for_selector("#sessions li.session")
        titles_after = page.locator("#sessions li .title").all_inner_texts()
        assert sorted(titles_after) == sorted(titles)
        link = page.locator("a.download", has_text="mask-1.png")
        with page.expect_download() as dl:
            link.click()
        assert dl.value.suggested_filename == "mask-1.png"
        assert dl.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        again.stop()
