"""The page in a real browser: Playwright drives Debian's chromium against ``switchboard serve``'s
app over the real default agent (trained router, SAM, detector, editor, tracker) on loopback.

Upload a ShapeWorld image, draw a box, ask to segment it → the mask overlay (in a colour that
stands out from the object); recolour an object in the left half → the edit is seen at once;
upload a ShapeWorld video, ask to track → boxes drawn over the playing video, its controls below
it; a request for something absent reads as failed; refusals are sentences; the attached file
survives a reload; sessions are renamed and deleted; reload the page, and restart the server →
the session is listed and reopens with its overlay. No page logs a console error.
Screenshots go to ``runs/test-artifacts/browser/`` (CI keeps them as artifacts).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from switchboard.core.media import Video, decode_image, encode_png, save_video
from switchboard.world.scene import generate_scene
from switchboard.world.video import generate_video

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("SWITCHBOARD_TEST_ARTIFACTS", "runs/test-artifacts")) / "browser"
TOKEN = "browser-token"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
TURN_MS = 120_000
CONSOLE_ERRORS: list[str] = []  # every page's console errors, across the tests

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
        config = uvicorn.Config(
            create_app(self.agent, tokens=[TOKEN]),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
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
    console: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on(
        "console",
        lambda m: (
            console.append(f"{m.text} ({m.location.get('url', '')})") if m.type == "error" else None
        ),
    )
    yield pg
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    CONSOLE_ERRORS.extend(console)
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not console, f"console errors on the page (a 404, a failed load…): {console}"


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
    w, h = page.evaluate(
        "[document.querySelector('#stage-canvas').width, "
        "document.querySelector('#stage-canvas').height]"
    )
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
    return tuple(
        page.evaluate(
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
        )
    )


def test_segment_a_drawn_box_shows_the_mask_overlay(server, page, files):
    page.goto(server.url)
    # The page says how the router calls tools: the default agent makes hybrid calls.
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('hybrid calls (text + signal')"
    )
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
    inside, total = _overlay_pixels(
        page,
        ".bubble.assistant:last-of-type canvas.overlay",
        [box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2],
    )
    assert total > 50 and inside / total > 0.95, (inside, total)
    # The overlay stands out from the red square under it: its outline, and its fill as drawn
    # over the square, are >= 60 away in RGB from the square's own colour.
    scene = files["scene"]
    assert scene.objects[0].color == "red"
    under = np.flatnonzero(scene.masks[0].ravel()).tolist()
    fill, outline = page.evaluate(
        """([sel, under]) => {
            const c = document.querySelector(sel + ' canvas.overlay');
            const img = document.querySelector(sel + ' .overlay-view img');
            const w = c.width, h = c.height;
            const ov = c.getContext('2d').getImageData(0, 0, w, h).data;
            const t = document.createElement('canvas'); t.width = w; t.height = h;
            t.getContext('2d').drawImage(img, 0, 0);
            const px = t.getContext('2d').getImageData(0, 0, w, h).data;
            const fill = [0, 0, 0, 0, 0, 0]; let n = 0; const edge = [0, 0, 0]; let m = 0;
            for (const i of under) {
                const a = ov[i * 4 + 3] / 255;
                if (!a) continue;
                for (let k = 0; k < 3; k++) {
                    fill[k] += a * ov[i * 4 + k] + (1 - a) * px[i * 4 + k];  // as shown
                    fill[k + 3] += px[i * 4 + k];
                    if (a === 1) edge[k] += ov[i * 4 + k];
                }
                n++; if (a === 1) m++;
            }
            return [[...fill.slice(0, 3).map(v => v / n), ...fill.slice(3).map(v => v / n)],
                    edge.map(v => v / Math.max(m, 1)).concat([m])];
        }""",
        [".bubble.assistant:last-of-type", under],
    )
    red = scene.image[scene.masks[0]].mean(axis=0)
    assert np.linalg.norm(np.array(fill[3:]) - red) < 20  # the input pixels are the square's
    assert np.linalg.norm(np.array(fill[:3]) - red) >= 60, (fill, red)
    assert outline[3] > 10 and np.linalg.norm(np.array(outline[:3]) - red) >= 60, (outline, red)
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
    _ask(page, "can you find the circles?")  # no file: it works on the session's current image
    turn = page.locator(".bubble.assistant").last
    overlay = turn.locator("canvas.overlay")
    overlay.wait_for()
    assert int(overlay.get_attribute("data-boxes")) == circles
    assert turn.locator(".trace td.tool").first.inner_text() == "detect"
    assert turn.locator("a.download", has_text="results.json").count() == 1

    page.click("#new-session")  # no current image there: a request without a file generates
    assert page.locator("#current").is_hidden() and page.locator("#stage").is_hidden()
    _ask(page, "draw a red star and a green circle")
    image = page.locator(".bubble.assistant").last.locator("figure.generated img")
    image.wait_for()
    assert image.evaluate("i => i.complete && i.naturalWidth") == 256


def _watch_progress(page) -> None:
    """Record every text the live progress line shows (``window.__progress``)."""
    page.evaluate(
        """() => {
            window.__progress = [];
            new MutationObserver(() => {
                for (const p of document.querySelectorAll('#messages .progress')) {
                    const seen = window.__progress;
                    if (seen[seen.length - 1] !== p.textContent) seen.push(p.textContent);
                }
            }).observe(document.querySelector('#messages'),
                       {subtree: true, childList: true, characterData: true});
        }"""
    )


SHOWN = """([sel, box]) => {
    // What a person sees at the object's centre, and how many of the object's pixels differ
    // there from the input image.
    const fig = [...document.querySelectorAll(sel)].pop();
    const before = fig.querySelector('img.before');
    const r = before.getBoundingClientRect();
    const sx = r.width / before.naturalWidth, sy = r.height / before.naturalHeight;
    const at = document.elementFromPoint(r.left + (box[0] + box[2]) / 2 * sx,
                                         r.top + (box[1] + box[3]) / 2 * sy);
    const read = (img) => {
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        return ctx.getImageData(0, 0, c.width, c.height).data;
    };
    const a = read(at), b = read(before);
    let n = 0;
    for (let y = Math.floor(box[1]); y <= box[3]; y++) {
        for (let x = Math.floor(box[0]); x <= box[2]; x++) {
            const i = (y * before.naturalWidth + x) * 4;
            const d = Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1])
                + Math.abs(a[i + 2] - b[i + 2]);
            if (d > 30) n++;
        }
    }
    const what = at.closest('.after') ? 'after' : at.classList.contains('before') ? 'before'
        : at.tagName;
    return [what, n];
}"""


def test_an_edit_in_the_left_half_is_seen_at_once(server, page, files):
    page.goto(server.url)
    page.click("#new-session")
    _attach(page, files["image"])
    scene = files["scene"]
    k = 3  # the cyan heart, at the left edge: a 50 % slider used to hide edits there
    obj, box = scene.objects[k], [float(v) for v in scene.boxes[k]]
    assert (box[0] + box[2]) / 2 < scene.image.shape[1] / 2, box
    _watch_progress(page)
    _ask(page, f"make the {obj.color} {obj.shape} yellow")
    view = page.locator(".bubble.assistant").last.locator("figure.before-after")
    view.wait_for()
    assert view.get_attribute("data-before") != view.get_attribute("data-after")
    sizes = view.locator("img").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert sizes == [256, 256], sizes
    # The first view: the edited image, whole — the heart is yellow on screen.
    assert view.get_attribute("data-view") == "after"
    assert view.get_attribute("data-showing") == "after"
    view.scroll_into_view_if_needed()
    shown, changed = page.evaluate(SHOWN, ["figure.before-after", box])
    assert shown == "after" and changed > 200, (shown, changed)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = view.locator(".media-wrap").screenshot(path=str(SHOTS / "edit_first_view.png"))
    seen = decode_image(shot, convert=True).astype(float)
    sy, sx = seen.shape[0] / scene.image.shape[0], seen.shape[1] / scene.image.shape[1]
    ys, xs = np.nonzero(scene.masks[k])
    on_screen = seen[((ys + 0.5) * sy).astype(int), ((xs + 0.5) * sx).astype(int)]
    moved = np.linalg.norm(on_screen - scene.image[ys, xs].astype(float), axis=1)
    assert np.median(moved) > 60, np.median(moved)  # the screenshot shows the heart changed
    # The live line named each stage and its time while the turn ran.
    progress = page.evaluate("window.__progress")
    assert any(re.match(r"routing… \d+\.\d s", t) for t in progress), progress
    assert any(re.match(r"running [a-z_]+(, [a-z_]+)*… \d+\.\d s", t) for t in progress), progress
    assert len(progress) >= 5, progress  # redrawn as the seconds go by
    # "Before" shows the input (a click toggles it), and holding it peeks.
    toggle = view.locator("button.show-before")
    toggle.click()
    assert view.get_attribute("data-showing") == "before"
    assert page.evaluate(SHOWN, ["figure.before-after", box]) == ["before", 0]
    toggle.click()
    assert view.get_attribute("data-showing") == "after"
    toggle.hover()
    page.mouse.down()
    page.wait_for_function(
        "() => [...document.querySelectorAll('figure.before-after')].pop()"
        ".dataset.showing == 'before'"
    )
    page.mouse.up()
    assert view.get_attribute("data-showing") == "after"
    # Side by side: both images, next to each other.
    view.locator("button.view-mode[data-mode=side]").click()
    left, right = (view.locator(sel).bounding_box() for sel in ("img.before", ".after img"))
    assert left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 2
    # The slider is still there, as an option: it moves the cut.
    view.locator("button.view-mode[data-mode=slider]").click()
    view.locator("input.split").fill("90")
    assert "90%" in view.locator(".after").evaluate("e => e.style.clipPath")
    view.locator("button.view-mode[data-mode=after]").click()
    assert view.locator("input.split").is_hidden()


def _current(page, server) -> dict:
    """The open session's current image, as ``GET /api/sessions/{id}`` has it."""
    sid = page.evaluate("state.session")
    r = page.request.get(
        server.url + f"api/sessions/{sid}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.ok, r.text()
    return r.json()["current"]


def _indicator_shows(page, sha: str) -> None:
    """Wait until the "Working on" indicator shows the artifact ``sha``: its image's source is
    the object URL the page made of ``/api/artifacts/<sha>`` (fetched with the token)."""
    page.wait_for_selector(f"#current-image[data-sha256='{sha}']")
    page.wait_for_function(
        "sha => { const i = document.querySelector('#current-image');"
        " return i.src === state.urls.get(sha) && i.complete && i.naturalWidth === 256; }",
        arg=sha,
    )
    assert page.locator("#current").is_visible()


def test_the_next_request_works_on_the_current_image_and_undo_goes_back(server, page, files):
    page.goto(server.url)
    page.click("#new-session")
    assert page.locator("#current").is_hidden()
    _attach(page, files["image"])
    scene = files["scene"]
    box = [float(v) for v in scene.boxes[0]]  # the red square
    _drag_box(page, box)
    _ask(page, "segment this")
    page.locator(".bubble.assistant").last.locator("canvas.overlay[data-masks='1']").wait_for()
    # Sent, the file is not attached any more (nor kept for a reload): it is the current image.
    upload = _current(page, server)
    assert upload["source"] == "upload" and upload["parent_id"] is None, upload
    _indicator_shows(page, upload["sha256"])
    assert page.locator("#current-source").inner_text() == "(uploaded)"
    assert page.evaluate("state.file") is None and page.locator("#remove-file").is_hidden()
    deadline = time.monotonic() + 10
    while _kept(page):
        assert time.monotonic() < deadline, "the sent file is still kept for a reload"
        time.sleep(0.1)
    stage = page.locator("#stage")
    assert stage.get_attribute("data-showing") == "current"
    assert page.locator("#undo").is_disabled() and page.locator("#redo").is_disabled()

    # No file attached: the edit works on the current image, and its result becomes current.
    k = 3  # the cyan heart
    obj = scene.objects[k]
    _ask(page, f"make the {obj.color} {obj.shape} yellow")
    view = page.locator(".bubble.assistant").last.locator("figure.before-after")
    view.wait_for()
    worked_on = page.locator(".bubble.user").last.locator("figure.worked-on")
    assert worked_on.get_attribute("data-sha256") == upload["sha256"]
    assert worked_on.locator("figcaption").inner_text() == "worked on the current image"
    assert view.get_attribute("data-before") == upload["sha256"]
    edited = _current(page, server)
    assert edited["source"] == "edited" and edited["parent_id"] == upload["id"], edited
    assert edited["sha256"] == view.get_attribute("data-after") != upload["sha256"]
    _indicator_shows(page, edited["sha256"])
    assert page.locator("#current-source").inner_text() == "(edited)"
    assert stage.get_attribute("data-sha256") == edited["sha256"]  # a region is drawn on it
    assert page.locator("#undo").is_enabled() and page.locator("#redo").is_disabled()

    # Undo: the upload is current again; Redo: the edit; Undo again.
    page.click("#undo")
    _indicator_shows(page, upload["sha256"])
    assert _current(page, server)["sha256"] == upload["sha256"]
    assert page.locator("#current-source").inner_text() == "(uploaded)"
    assert page.locator("#undo").is_disabled() and page.locator("#redo").is_enabled()
    page.click("#redo")
    _indicator_shows(page, edited["sha256"])
    assert _current(page, server)["sha256"] == edited["sha256"]
    page.click("#undo")
    _indicator_shows(page, upload["sha256"])
    assert page.locator("#composer-error").is_hidden()

    # A reload reads the current image from the server: still the upload.
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    _indicator_shows(page, upload["sha256"])
    assert _current(page, server)["sha256"] == upload["sha256"]
    assert page.locator("#redo").is_enabled()  # the undone edit can still be redone

    # A box drawn on the current image (no file attached) segments the object there.
    page.wait_for_selector("#stage[data-showing='current'] #stage-canvas[data-ready='1']")
    _drag_box(page, box)
    _ask(page, "segment this")
    turn = page.locator(".bubble.assistant").last
    overlay = turn.locator("canvas.overlay")
    overlay.wait_for()
    assert overlay.get_attribute("data-masks") == "1"
    inside, total = _overlay_pixels(
        page,
        ".bubble.assistant:last-of-type canvas.overlay",
        [box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2],
    )
    assert total > 50 and inside / total > 0.95, (inside, total)
    asked = page.locator(".bubble.user").last
    assert asked.locator("figure.worked-on").get_attribute("data-sha256") == upload["sha256"]
    assert asked.locator(".region").inner_text().startswith("region: box (")
    _indicator_shows(page, upload["sha256"])  # segmenting makes no new image


def test_a_conversation_in_words_segment_then_make_it_yellow_then_undo(server, page, files):
    """Three turns said in words, the router reading the earlier ones: segment an object,
    "now make it yellow" (no file, no region: "it" is the segmented object), "undo" — the
    recoloured image and then the original are current, and a reload finds both turns' images
    and the original still current."""
    from switchboard.core import mask_to_box
    from switchboard.specialists.colors import color_in_box
    from switchboard.ui.auth import owner_id as _owner

    page.goto(server.url)
    page.click("#new-session")
    _attach(page, files["image"])
    scene = files["scene"]
    k = 3  # the cyan heart
    obj = scene.objects[k]
    _ask(page, f"segment the {obj.color} {obj.shape}")
    page.locator(".bubble.assistant").last.locator("canvas.overlay[data-masks='1']").wait_for()
    upload = _current(page, server)
    _indicator_shows(page, upload["sha256"])

    _ask(page, "now make it yellow")
    view = page.locator(".bubble.assistant").last.locator("figure.before-after")
    view.wait_for()
    edited = _current(page, server)
    assert edited["source"] == "edited" and edited["parent_id"] == upload["id"], edited
    _indicator_shows(page, edited["sha256"])
    sid = page.evaluate("state.session")
    image = server.agent.current_media(sid, owner=_owner(TOKEN))
    mask = scene.masks[k]
    assert color_in_box(image, mask_to_box(mask), mask) == "yellow"

    _ask(page, "undo")
    reply = page.locator(".bubble.assistant").last.inner_text()
    assert "undid" in reply, reply
    _indicator_shows(page, upload["sha256"])
    assert _current(page, server)["sha256"] == upload["sha256"]
    assert page.locator("#redo").is_enabled()

    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    _indicator_shows(page, upload["sha256"])
    assert page.locator(".bubble.user").count() == 3
    assert page.locator(".bubble.assistant figure.before-after").count() == 1


def _clip_session(server, page, files):
    """A new session with the clip attached: (the clip, the index of an object seen on every
    frame, that object)."""
    page.goto(server.url)
    page.click("#new-session")
    _attach(page, files["video"])
    clip = files["clip"]
    n = int(np.flatnonzero(clip.present.all(axis=0))[0])
    return clip, n, clip.objects[n]


def test_track_a_video_draws_the_track(server, page, files):
    clip, n, obj = _clip_session(server, page, files)
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
    # The controls sit below the picture: nothing covers a tracked object.
    assert video.get_attribute("controls") is None
    picture, controls = video.bounding_box(), view.locator(".track-controls").bounding_box()
    assert controls["y"] >= picture["y"] + picture["height"] - 1, (picture, controls)
    view.locator(".track-controls .play").click()  # plays, and the boxes follow the frames
    page.wait_for_function(
        "f => document.querySelector('.track-view canvas.tracks').dataset.frame != f",
        arg=str(frame),
    )
    view.locator(".track-controls .play").click()  # pauses
    assert video.evaluate("v => v.paused")
    view.locator(".track-controls .scrub").fill("2")  # the scrubber seeks to a frame
    page.wait_for_function(
        "() => document.querySelector('.track-view canvas.tracks').dataset.frame == '2'"
    )
    assert view.locator(".frame-label").inner_text().startswith("frame 3 / ")


def test_a_video_edit_plays_beside_the_original_and_downloads(server, page, files):
    """Upload a clip, ask for an object to be made another colour: the edited video plays
    beside the original, in step with it, shows the new colour where the object is, and
    downloads as an mp4."""
    from switchboard.core.vocabulary import COLORS

    clip, n, obj = _clip_session(server, page, files)
    color = "blue" if obj.color != "blue" else "red"
    _ask(page, f"make the {obj.color} {obj.shape} {color}")
    view = page.locator(".bubble.assistant").last.locator("figure.video-before-after")
    view.wait_for()
    assert view.locator("video").count() == 2
    for label in ("the original video", "the edited video"):
        view.locator(f"video[aria-label='{label}']").evaluate(
            "v => new Promise(r => v.readyState >= 2 ? r() : v.addEventListener('loadeddata', r))"
        )
    after = view.locator("video[aria-label='the edited video']")
    assert abs(after.evaluate("v => v.duration") - clip.num_frames / clip.fps) < 0.3
    view.locator(".track-controls .play").click()  # one button plays both
    page.wait_for_function(
        "() => [...document.querySelectorAll('.video-before-after video')]"
        ".every(v => !v.paused && v.currentTime > 0.3)"
    )
    view.locator(".track-controls .play").click()  # and pauses both
    page.wait_for_function(
        "() => [...document.querySelectorAll('.video-before-after video')].every(v => v.paused)"
    )
    times = view.locator("video").evaluate_all("vs => vs.map(v => v.currentTime)")
    assert abs(times[0] - times[1]) < 0.15, times
    # The frame on screen: the object's pixels in the edited video have the new colour.
    frame = int(round(times[1] * clip.fps - 0.5)) % clip.num_frames
    flat = after.evaluate(
        """v => {
        const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d'); g.drawImage(v, 0, 0);
        return Array.from(g.getImageData(0, 0, c.width, c.height).data);
    }"""
    )
    shown = np.array(flat, np.uint8).reshape(clip.size, clip.size, 4)[..., :3]
    inside = cv2.erode(clip.masks[frame, n].astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    mean = shown[inside].astype(float).mean(0)
    nearest = min(COLORS, key=lambda c: np.linalg.norm(mean - np.array(COLORS[c], float)))
    assert nearest == color, (mean, obj.color, color)
    with page.expect_download() as got:
        view.locator("a.download").click()
    assert got.value.suggested_filename == "edited.mp4"
    data = Path(got.value.path()).read_bytes()
    assert data[4:8] == b"ftyp"


def test_a_request_for_something_absent_reads_as_failed(server, page, files):
    page.goto(server.url)
    page.click("#new-session")
    _attach(page, files["image"])
    assert not any(o.shape == "bus" for o in files["scene"].objects)
    _ask(page, "make the yellow bus blue")
    turn = page.locator(".bubble.assistant").last
    assert turn.get_attribute("data-outcome") == "failed", turn.inner_text()
    assert turn.locator(".outcome-tag").inner_text() == "✗ failed"
    assert turn.evaluate("b => getComputedStyle(b).borderTopColor") == "rgb(179, 38, 30)"
    assert turn.locator("figure.before-after").count() == 0
    statuses = turn.locator(".trace tbody td:nth-child(5)").all_inner_texts()
    assert statuses and "ok" not in statuses, statuses
    page.reload()  # read back from the history, it still reads as failed
    again = page.locator(".bubble.assistant[data-outcome='failed']").last
    again.wait_for()
    assert again.locator(".outcome-tag").inner_text() == "✗ failed"


def _page_text(page) -> str:
    return page.evaluate("document.body.innerText")


def test_refusals_are_sentences_about_the_input(server, page, tmp_path):
    page.goto(server.url)
    page.wait_for_selector("body[data-ready='1']")
    bubbles = page.locator(".bubble").count()
    error = page.locator("#composer-error")
    page.click("#send")  # nothing typed
    assert error.inner_text() == "Type a request first — for example “segment the red circle”."
    page.fill("#text", "x")  # typing clears the hint
    assert error.is_hidden()
    assert page.locator("#counter").inner_text() == "1 / 4000"
    long = "segment the red circle " * 183
    page.fill("#text", long)
    counter = page.locator("#counter")
    assert counter.inner_text() == f"{len(long)} / 4000"
    assert "over" in counter.get_attribute("class")
    assert counter.evaluate("c => getComputedStyle(c).color") == "rgb(179, 38, 30)"
    page.click("#send")
    assert error.inner_text() == (
        f"Your message is {len(long.strip())} characters long; the limit "
        "is 4000. Shorten it, then send."
    )
    assert page.locator(".bubble").count() == bubbles  # nothing was sent
    # A text file named .png: one sentence naming it.
    fake = tmp_path / "photo.png"
    fake.write_text("these are words, not pixels\n" * 20)
    page.set_input_files("#file", str(fake))
    page.wait_for_function(
        "document.querySelector('#composer-error').textContent.includes('photo')"
    )
    assert error.inner_text() == (
        "photo.png is not an image I can read (it may be damaged or not an image)."
    )
    assert page.locator("#stage").is_hidden()
    text = _page_text(page)
    assert "{" not in text and "<_io" not in text and "Not sent" not in text


def _kept(page) -> bool:
    """Whether this tab's attached file is in IndexedDB."""
    return page.evaluate(
        """() => new Promise((resolve) => {
            const open = indexedDB.open('switchboard', 1);
            open.onsuccess = () => {
                const get = open.result.transaction('attachments').objectStore('attachments')
                    .get(sessionStorage.getItem('switchboard.tab'));
                get.onsuccess = () => { open.result.close(); resolve(!!get.result); };
                get.onerror = () => resolve(false);
            };
            open.onerror = () => resolve(false);
        })"""
    )


def test_the_attached_file_survives_a_reload(server, page, files):
    page.goto(server.url)
    _attach(page, files["image"])
    deadline = time.monotonic() + 10
    while not _kept(page):
        assert time.monotonic() < deadline, "the attached file was not kept"
        time.sleep(0.1)
    page.reload()
    page.wait_for_selector("#stage-canvas[data-ready='1']")
    assert page.evaluate("[state.file.name, state.file.type, state.file.size]") == [
        "scene.png",
        "image/png",
        files["image"].stat().st_size,
    ]
    assert page.locator("#stage-image").evaluate("i => i.naturalWidth") == 256
    assert page.locator("#composer-error").is_hidden()
    # When it could not be kept (here: storage emptied), the page says so after the reload.
    page.evaluate(
        """() => new Promise((resolve) => {
            const open = indexedDB.open('switchboard', 1);
            open.onsuccess = () => {
                const tx = open.result.transaction('attachments', 'readwrite');
                tx.objectStore('attachments').clear();
                tx.oncomplete = () => { open.result.close(); resolve(); };
            };
        })"""
    )
    page.reload()
    error = page.locator("#composer-error")
    error.wait_for()
    assert error.inner_text() == (
        "Your attached file (scene.png) was dropped when the page reloaded; attach it again."
    )
    assert page.locator("#stage").is_hidden() and page.evaluate("state.file") is None
    page.reload()  # said once: the next reload starts clean
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#composer-error").is_hidden()


def test_sessions_have_distinct_titles_and_are_renamed_and_deleted(server, page):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    keep, drop = (
        page.request.post(server.url + "api/sessions", headers=auth).json()["id"] for _ in range(2)
    )
    page.goto(server.url)
    page.wait_for_selector(f"#sessions li[data-session='{drop}']")
    titles = page.locator("#sessions li .title").all_text_contents()
    assert len(set(titles)) == len(titles), titles  # no two alike
    assert all(re.search(r" · (\d+ \w+ )?\d\d:\d\d(:\d\d)?( \(\d+\))?$", t) for t in titles), titles
    assert any(t.startswith("segment this · ") for t in titles), titles
    item = page.locator(f"#sessions li[data-session='{keep}']")
    item.hover()
    item.locator("button.rename").click()
    page.locator(".rename-input").fill("Bus depot")
    page.locator(".rename-input").press("Enter")
    page.wait_for_selector(f"#sessions li[data-session='{keep}'] .title >> text='Bus depot'")
    gone = page.locator(f"#sessions li[data-session='{drop}']")
    gone.hover()
    gone.locator("button.delete").click()
    assert "Delete “" in gone.locator(".confirm").inner_text()
    gone.locator("button.confirm-keep").click()  # changed their mind
    assert gone.locator(".title").count() == 1
    gone.locator("button.delete").click()
    gone.locator("button.confirm-delete").click()
    page.wait_for_selector(f"#sessions li[data-session='{drop}']", state="detached")
    page.reload()
    page.wait_for_selector(f"#sessions li[data-session='{keep}']")
    assert page.locator(f"#sessions li[data-session='{keep}'] .title").text_content() == "Bus depot"
    assert page.locator(f"#sessions li[data-session='{drop}']").count() == 0
    assert page.request.get(server.url + f"api/sessions/{drop}", headers=auth).status == 404


def test_reload_and_restart_find_the_session(server, page, files, home):
    page.goto(server.url)
    page.wait_for_selector("#sessions li.session")
    titles = page.locator("#sessions li .title").all_text_contents()
    assert any(t.startswith("segment this · ") for t in titles), titles
    first = page.locator("#sessions li", has_text="segment this").filter(has_text="1 turn")
    first.click()  # the box test's session (the sketch test's has 2 turns)
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
        titles_after = page.locator("#sessions li .title").all_text_contents()
        assert sorted(titles_after) == sorted(titles)
        link = page.locator("a.download", has_text="mask-1.png")
        with page.expect_download() as dl:
            link.click()
        assert dl.value.suggested_filename == "mask-1.png"
        assert dl.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        again.stop()
