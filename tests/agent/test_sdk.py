"""The SDK: turns persist across an Agent restart with their artifacts, a process killed
mid-turn leaves a consistent database, events stream, bad input loses nothing, and the real
router drives the real specialists end to end."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from switchboard.agent.graph import Step
from switchboard.agent.sdk import Agent
from switchboard.core import HybridCall, Registry
from switchboard.core.errors import InvalidInputError
from switchboard.core.media import decode_image
from switchboard.specialists import BUILTINS
from switchboard.world.scene import generate_scene


class SegmentTheBox:
    """A scripted policy: segment the region's box, then say so."""

    def step(self, messages, images, frame_index, regions, objects=None):
        if messages[-1]["content"].startswith("[segment"):
            return Step(text="Here it is.")
        return Step(calls=[HybridCall(tool="segment", args={"box": regions[0]["box"]})])


@pytest.fixture(scope="module")
def scene():
    return generate_scene(5)


def _agent(home, policy=None) -> Agent:
    return Agent.load(home=home, policy=policy or SegmentTheBox(), registry=Registry(BUILTINS))


def test_turns_and_artifacts_survive_a_restart(tmp_path, scene):
    i = int(np.argmax([m.sum() for m in scene.masks]))
    box = [float(v) for v in scene.boxes[i]]
    turn = _agent(tmp_path).chat("segment this", image=scene.image, region=box)
    assert turn.text == "Here it is." and [c.tool for c in turn.calls] == ["segment"]
    (mask,) = turn.masks
    assert (mask & scene.masks[i]).sum() / (mask | scene.masks[i]).sum() > 0.7
    files = {p.name for p in turn.save(tmp_path / "out")}
    assert {"reply.txt", "calls.json", "mask_0.png"} <= files
    assert json.loads((tmp_path / "out" / "calls.json").read_text())[0]["status"] == "ok"

    again = _agent(tmp_path)  # a new process would see the same
    (session,) = again.sessions()
    assert session["id"] == turn.session
    (t,) = again.history(turn.session)
    assert t["status"] == "done" and t["calls"][0]["tool"] == "segment"
    user, reply = t["messages"]
    assert user["region"] == {"box": box} and reply["text"] == "Here it is."
    image = decode_image(again.store.artifact(user["artifacts"][0]["sha256"])[0])
    assert np.array_equal(image, scene.image)
    saved = decode_image(again.store.artifact(reply["artifacts"][0]["sha256"])[0], convert=True)
    assert np.array_equal(saved[..., 0] > 0, mask)
    # The next turn in the session carries the earlier words to a router asked to read them.
    seen = []

    class Reader:
        def step(self, messages, *a, **kw):
            seen.append(messages)
            return Step(text="ok")

    reader = Agent.load(
        home=tmp_path, policy=Reader(), registry=Registry(BUILTINS), history_turns=1
    )
    reader.chat("and now?", session=turn.session)
    assert [m["content"] for m in seen[0][1:3]] == ["segment this", "Here it is."]


class DetectStars:
    def step(self, messages, images, frame_index, regions, objects=None):
        if messages[-1]["content"].startswith("[detect"):
            return Step(text="Found them.")
        return Step(calls=[HybridCall(tool="detect", args={})])


def test_boxes_and_tracks_are_stored_with_the_turn(tmp_path, scene):
    """A page reading the history draws the same boxes the turn returned."""
    agent = _agent(tmp_path, DetectStars())
    turn = agent.chat("find everything", image=scene.image)
    assert turn.boxes
    (reply,) = [m for m in agent.history(turn.session)[0]["messages"] if m["role"] == "assistant"]
    (stored,) = [a for a in reply["artifacts"] if a["kind"] == "results"]
    data, media_type = agent.store.artifact(stored["sha256"])
    found = json.loads(data)
    assert media_type == "application/json" and found["tracks"] == [] and found["fps"] is None
    assert [(b["xyxy"], b["label"]) for b in found["boxes"]] == [
        ([float(v) for v in b], lb) for b, lb, _ in turn.boxes
    ]


class Recorder(SegmentTheBox):
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def step(self, messages, images, frame_index, regions, objects=None):
        self.seen.append([m["content"] for m in messages])
        return super().step(messages, images, frame_index, regions)


def test_the_router_reads_earlier_turns_only_when_asked(tmp_path, scene):
    box = [float(v) for v in scene.boxes[0]]
    for turns, expect_earlier in ((0, False), (1, True)):
        policy = Recorder()
        agent = Agent.load(
            home=tmp_path / str(turns),
            policy=policy,
            registry=Registry(BUILTINS),
            history_turns=turns,
        )
        first = agent.chat("first request", image=scene.image, region=box)
        agent.chat("second request", image=scene.image, region=box, session=first.session)
        routed = policy.seen[2]  # the second turn's first route
        assert routed[-1].endswith("second request")
        assert ("first request" in " ".join(routed)) == expect_earlier
        assert len(agent.history(first.session)) == 2  # the store keeps both either way


def test_the_router_reads_earlier_turns_by_default_within_a_bounded_prompt(
    tmp_path, scene, monkeypatch
):
    """History is on by default; past ``HISTORY_CHARS`` the oldest turns are dropped (the
    newest earlier turn is kept whole)."""
    from switchboard.agent import sdk

    box = [float(v) for v in scene.boxes[0]]
    policy = Recorder()
    agent = Agent.load(home=tmp_path, policy=policy, registry=Registry(BUILTINS))
    assert agent.history_turns == sdk.HISTORY_TURNS > 0
    first = agent.chat("first request", image=scene.image, region=box)
    agent.chat("second request", region=box, session=first.session)
    monkeypatch.setattr(sdk, "HISTORY_CHARS", 30)  # one earlier turn's words fit, not two
    agent.chat("third request", region=box, session=first.session)
    second, third = policy.seen[2], policy.seen[4]  # each turn's first route
    assert "first request" in " ".join(second)
    assert "second request" in " ".join(third) and "first request" not in " ".join(third)


def test_uploaded_videos_keep_their_media_type():
    from switchboard.agent.store import media_type

    assert media_type("video", b"\x1aE\xdf\xa3" + bytes(20)) == "video/webm"
    assert media_type("video", b"RIFF\0\0\0\0AVI LIST") == "video/x-msvideo"
    assert media_type("video", b"GIF89a" + bytes(10)) == "image/gif"
    assert media_type("video", b"\0\0\0\x14ftypqt  ") == "video/quicktime"
    assert media_type("video", b"\0\0\0\x20ftypisom") == "video/mp4"
    assert media_type("mask", b"\x89PNG") == "image/png"


def test_events_stream_in_order(tmp_path, scene):
    box = [float(v) for v in scene.boxes[0]]
    events = list(_agent(tmp_path).stream("segment this", image=scene.image, region=box))
    kinds = [e["type"] for e in events]
    assert kinds == ["route", "call_started", "call_finished", "route", "text", "turn"]
    assert events[-1]["turn"].text == "Here it is."


def test_bad_input_is_refused_before_anything_is_stored(tmp_path, scene):
    agent = _agent(tmp_path)
    for kw in (
        {"region": [0, 0, 900, 10]},
        {"region": [10, 10, 5, 20]},
        {"region": {"point": [-1, 3]}},
    ):
        with pytest.raises(InvalidInputError):
            agent.chat("segment this", image=scene.image, **kw)
    with pytest.raises(InvalidInputError):
        agent.chat("segment this", image=b"not an image")
    with pytest.raises(InvalidInputError):
        agent.chat("   ")
    with pytest.raises(InvalidInputError):
        agent.chat("segment", region=[0, 0, 1, 1])  # no image to point into
    assert agent.sessions() == []


def test_an_image_over_the_pixel_limit_is_refused(tmp_path, scene, monkeypatch):
    from switchboard.core.config import get_settings
    from switchboard.core.media import encode_png

    monkeypatch.setenv("SWITCHBOARD_MAX_IMAGE_PIXELS", "10000")  # 100 x 100
    get_settings.cache_clear()
    try:
        agent = _agent(tmp_path)
        with pytest.raises(InvalidInputError, match="pixels|limit|large"):
            agent.chat("segment the circle", image=encode_png(scene.image))
        assert agent.sessions() == []
    finally:
        monkeypatch.delenv("SWITCHBOARD_MAX_IMAGE_PIXELS")
        get_settings.cache_clear()


# A turn of two steps: ``invert`` (an edit: a new image), then ``forever``, which hangs in the
# process that gets killed. The same tools and policy serve the restarted agent (where
# ``forever`` returns at once and records the pixels it was given).
TOOLS = textwrap.dedent("""
    import time
    import numpy as np
    from pydantic import BaseModel
    from switchboard.agent.graph import Step
    from switchboard.core import HybridCall, Registry, Specialist
    from switchboard.core.results import ImageOut, Text

    class Args(BaseModel):
        pass

    class Invert(Specialist):
        name, description, tasks, Args, media = "invert", "inverts", ("invert",), Args, ("image",)
        def run(self, media, args, signal=None):
            px = media.pixels
            return ImageOut(image=255 - px, edit_mask=np.ones(px.shape[:2], bool))

    class Forever(Specialist):
        name, description, tasks, Args, media = "forever", "hangs", ("hang",), Args, ("image",)
        hang = True
        seen = []
        def run(self, media, args, signal=None):
            Forever.seen.append(media.pixels.copy())
            if Forever.hang:
                print("RUNNING", flush=True)
                time.sleep(600)
            return Text(text="finished")

    class Policy:
        def step(self, messages, *a, **kw):
            last = messages[-1]["content"]
            if last.startswith("[invert"):
                return Step(calls=[HybridCall(tool="forever", args={})])
            if last.startswith("[forever"):
                return Step(text="Finished.")
            return Step(calls=[HybridCall(tool="invert", args={})])

    def registry():
        reg = Registry()
        reg.register(Invert)
        reg.register(Forever)
        return reg
""")
KILLED = TOOLS + textwrap.dedent("""
    import json, os, signal, sys
    from switchboard.agent.sdk import Agent
    from switchboard.world.scene import generate_scene

    # Imported once: each line (a home, a database) forks a process of its own that runs the
    # turn (its pid printed first; it prints RUNNING in its second call); the kernel reaps them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while line := sys.stdin.readline():
        home, database = json.loads(line)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                Agent.load(home=home, database=database, policy=Policy(),
                           registry=registry()).chat("invert, then hang",
                                                     image=generate_scene(1).image)
            except BaseException:
                import traceback
                traceback.print_exc()
            print("ENDED", flush=True)  # never hung: the test reads this, not RUNNING
            os._exit(1)
        print(pid, flush=True)
""")


@pytest.fixture(scope="module")
def killable():
    """A process that imports KILLED's modules once and forks the process of each turn to
    kill, so no test waits for a fresh interpreter's imports."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield proc
    proc.kill()
    proc.wait(timeout=30)
    proc.stdin.close()
    proc.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_mid_turn(killable, home, database: str | None = None) -> None:
    """Run a turn in another process (forked by ``killable``) and SIGKILL it while its second
    call hangs."""
    killable.stdin.write(json.dumps([str(home), database]) + "\n")
    killable.stdin.flush()
    pid = int(killable.stdout.readline())
    try:
        assert killable.stdout.readline().strip() == "RUNNING"  # the turn is in its second call
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid):  # gone once the kernel has reaped it
            assert time.monotonic() < deadline, "the turn's process did not die"
            time.sleep(0.01)
    if database:
        from sqlalchemy import create_engine, text

        with create_engine(database).connect() as conn:
            assert conn.execute(text("select status from turns")).all() == [("pending",)]
        return
    db = sqlite3.connect(home / "switchboard.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("select status from turns").fetchall() == [("pending",)]
    db.close()


def _tools():
    space: dict = {}
    exec(TOOLS, space)  # the same classes as the killed process, defined here
    space["Forever"].hang = False
    return space


def test_a_turn_cut_off_by_a_killed_process_resumes_from_its_checkpoint(tmp_path, killable):
    _kill_mid_turn(killable, tmp_path)
    tools = _tools()
    agent = Agent.load(home=tmp_path, policy=tools["Policy"](), registry=tools["registry"]())
    assert agent.recovered == 1 and len(agent.resumed) == 1
    (session,) = agent.sessions()
    (t,) = agent.history(session["id"])
    assert t["status"] == "done" and t["error"] is None and t["resumed"]  # says it was cut off
    assert [m["text"] for m in t["messages"]] == ["invert, then hang", "Finished."]
    # The first step was not run again (its result came from the checkpoint); the second ran
    # on the edited image the checkpoint restored, not on the input.
    assert [c["tool"] for c in t["calls"]] == ["invert", "forever"]
    (pixels,) = tools["Forever"].seen
    assert np.array_equal(pixels, 255 - generate_scene(1).image)
    assert [a["kind"] for a in t["messages"][1]["artifacts"]] == ["edited"]
    # The finished turn's checkpoints are gone; a new turn works as usual.
    db = sqlite3.connect(tmp_path / "checkpoints.db")
    assert db.execute("select count(*) from checkpoints").fetchone() == (0,)
    db.close()
    assert agent.chat("again", image=generate_scene(2).image).text == "Finished."


def test_on_postgresql_a_running_replica_resumes_the_turn_of_one_that_was_killed(
    tmp_path, postgres_url, killable
):
    """Two agent processes share a PostgreSQL store and checkpointer. One is killed in the
    middle of a turn; the other, already serving, claims the turn (its runner is dead) and
    resumes it from the shared checkpoint: the first step is not run again, the second runs on
    the image the checkpoint holds; the checkpoints go when the turn is stored."""
    from sqlalchemy import create_engine, text
    from switchboard.agent.graph import postgres_checkpointer
    from switchboard.agent.store import Store

    tools = _tools()
    replica = Agent(
        tools["Policy"](),
        tools["registry"](),
        Store(postgres_url, tmp_path / "artifacts", lease_s=1.5),
        checkpointer=postgres_checkpointer(postgres_url),
        recover="background",
    )
    try:
        replica.recovery.join(60)
        assert replica.recovered == 0  # nothing to resume yet
        _kill_mid_turn(killable, tmp_path, postgres_url)
        deadline = time.monotonic() + 60
        while replica.recovered != 1:  # its lease loop looks every half second
            assert time.monotonic() < deadline, "the turn was not resumed"
            time.sleep(0.1)
        (session,) = replica.sessions()
        (t,) = replica.history(session["id"])
        assert t["status"] == "done" and t["error"] is None and t["resumed"]
        assert [c["tool"] for c in t["calls"]] == ["invert", "forever"]
        (pixels,) = tools["Forever"].seen
        assert np.array_equal(pixels, 255 - generate_scene(1).image)
        assert replica.store.runner_of(t["id"]) == replica.store.runner
        with create_engine(postgres_url).connect() as conn:
            assert conn.execute(text("select count(*) from checkpoints")).scalar() == 0
        assert replica.resumed == [t["id"]] and replica.store.pending_turns() == []
    finally:
        replica.close()


def test_a_cut_off_turn_without_a_checkpoint_is_run_again_once_from_its_request(tmp_path, killable):
    _kill_mid_turn(killable, tmp_path)
    (tmp_path / "checkpoints.db").unlink()  # e.g. a home moved without its checkpoints
    for extra in ("checkpoints.db-wal", "checkpoints.db-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    tools = _tools()
    agent = Agent.load(home=tmp_path, policy=tools["Policy"](), registry=tools["registry"]())
    assert agent.recovered == 1 and len(agent.resumed) == 1  # the accepted request is not lost
    (session,) = agent.sessions()
    (t,) = agent.history(session["id"])
    assert t["status"] == "done" and t["error"] is None
    assert [c["tool"] for c in t["calls"]] == ["invert", "forever"]  # run from its start
    user = t["messages"][0]  # on the stored image
    image = decode_image(agent.store.artifact(user["artifacts"][0]["sha256"])[0])
    assert np.array_equal(image, generate_scene(1).image)


def test_a_server_resumes_interrupted_turns_in_the_background(tmp_path, killable):
    """``recover="background"``: the agent is usable at once; the interrupted turn is resumed
    on a thread that holds the turn lock, so a new turn runs after it."""
    _kill_mid_turn(killable, tmp_path)
    tools = _tools()
    agent = Agent.load(
        home=tmp_path, policy=tools["Policy"](), registry=tools["registry"](), recover="background"
    )
    assert agent.recovery is not None
    agent.recovery.join(120)
    assert agent.recovered == 1 and len(agent.resumed) == 1 and not agent.recovering
    (session,) = agent.sessions()
    assert [t["status"] for t in agent.history(session["id"])] == ["done"]


def test_a_turn_that_died_on_its_rerun_is_marked_failed_and_kept(tmp_path, killable):
    _kill_mid_turn(killable, tmp_path)
    (tmp_path / "checkpoints.db").unlink()
    for extra in ("checkpoints.db-wal", "checkpoints.db-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    from switchboard.agent.store import Store

    store = Store(f"sqlite:///{tmp_path / 'switchboard.db'}", tmp_path / "artifacts")
    (turn_id,) = store.pending_turns()
    assert store.claim_rerun(turn_id) and not store.claim_rerun(turn_id)  # a start died on it
    store.engine.dispose()
    tools = _tools()
    agent = Agent.load(home=tmp_path, policy=tools["Policy"](), registry=tools["registry"]())
    assert agent.recovered == 1 and agent.resumed == []
    (session,) = agent.sessions()
    (t,) = agent.history(session["id"])
    assert t["status"] == "failed" and "stopped" in t["error"]
    (user,) = t["messages"]  # the request and its image are kept
    assert user["text"] == "invert, then hang"


def test_the_trained_router_drives_the_specialists(tmp_path):
    """Agent.load()'s policy, hybrid calls by default: router-tiny (with its signal heads)
    routes a ShapeWorld request; the segment call runs with the router's signal and returns the
    referent. ``signals=False`` makes text calls."""
    scene = generate_scene(11)
    names = [f"{o.color} {o.shape}" for o in scene.objects]
    i = next(k for k, n in enumerate(names) if names.count(n) == 1)
    agent = Agent.load(home=tmp_path, registry=Registry(BUILTINS))
    text = Agent.load(home=tmp_path / "b", registry=Registry(BUILTINS), signals=False)
    assert agent.policy.calls == "hybrid" and text.policy.calls == "text"
    t0 = time.perf_counter()
    turn = agent.chat(f"segment the {names[i]}", image=scene.image)
    assert time.perf_counter() - t0 < 120
    assert turn.calls and turn.calls[0].tool == "segment" and turn.calls[0].status == "ok"
    assert turn.calls[0].with_signal
    assert turn.masks and turn.masks[0].shape == scene.image.shape[:2]
    assert agent.policy.calls == "hybrid"  # the loaded router has its heads


def test_a_turn_reports_each_stages_time_and_single_pass_skips_the_second_route(tmp_path, scene):
    box = [float(v) for v in scene.boxes[0]]
    agent = _agent(tmp_path)
    t0 = time.perf_counter()
    turn = agent.chat("segment this", image=scene.image, region=box)
    wall = time.perf_counter() - t0
    stages = [s for s, _ in turn.timings]
    assert stages == ["perceive", "route", "call:segment", "observe", "route", "respond"]
    assert all(s >= 0 for _, s in turn.timings) and sum(s for _, s in turn.timings) <= wall
    assert turn.text == "Here it is."

    one = _agent(tmp_path / "one", SegmentTheBox())
    one.single_pass = True
    turn = one.chat("segment this", image=scene.image, region=box)
    assert [s for s, _ in turn.timings] == [
        "perceive",
        "route",
        "call:segment",
        "observe",
        "respond",
    ]
    assert turn.text == "I segmented the object in the box — mask 1." and len(turn.masks) == 1
    assert Agent.load(home=tmp_path / "two", single_pass=True).single_pass


def test_the_memory_budget_setting_reaches_the_turns(tmp_path, scene, monkeypatch):
    """``SWITCHBOARD_MEMORY_BUDGET_MB`` (what ``--memory-budget-mb`` sets) is the budget of the
    agent's turns: over 1 MiB, the detector that perceive loaded is unloaded after the segment
    step, and the segmenter stays (it was just used)."""
    from switchboard.core.config import get_settings

    monkeypatch.setenv("SWITCHBOARD_MEMORY_BUDGET_MB", "1")
    get_settings.cache_clear()
    try:
        with _agent(tmp_path) as agent:
            assert agent.memory_budget_mb == 1.0
            box = [float(v) for v in scene.boxes[0]]
            events = []
            agent.chat(
                "segment this", image=scene.image, region={"box": box}, on_event=events.append
            )
            assert agent.registry.loaded() == ["segment"]
            assert ["detect"] in [e["tools"] for e in events if e["type"] == "unloaded"]
        assert agent.executor._shutdown  # the agent's thread pool closed with it
    finally:
        get_settings.cache_clear()


def test_a_registry_built_by_hand_is_the_one_its_specialists_use(scene):
    """Segment's detector, track's detector and segmenter, edit's segmenter: the agent's own
    registry's instances, never the process-wide default's."""
    from switchboard.core import Image
    from switchboard.specialists import default_registry, peer

    reg = Registry(BUILTINS)
    seg, track, edit = reg.get("segment"), reg.get("track"), reg.get("edit")
    assert peer(seg, "detect") is reg.get("detect") is track.detector
    assert track.segmenter is seg and edit.segmenter is seg
    assert reg.get("detect") is not default_registry().get("detect")
    seg.load()
    i = int(np.argmax([m.sum() for m in scene.masks]))
    words = f"{scene.objects[i].color} {scene.objects[i].shape}"
    seg(Image(pixels=scene.image), {"target": words})  # resolved through the detector
    assert reg.get("detect").loaded


def test_images_of_every_common_mode_are_accepted_as_rgb(tmp_path, scene):
    """A grey, alpha, palette, CMYK JPEG or 16-bit PNG is converted to RGB, not refused with a
    Python argument's name: each goes through a turn's input check, and a grey one through a
    whole turn."""
    import io

    from PIL import Image as PILImage

    agent = _agent(tmp_path)
    box = [float(v) for v in scene.boxes[0]]
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        img = PILImage.fromarray(scene.image)
        img = img.convert("I;16") if mode == "I;16" else img.convert(mode)
        buf = io.BytesIO()
        img.save(buf, format="JPEG" if mode == "CMYK" else "PNG")
        if mode == "L":
            turn = agent.chat("segment this", image=buf.getvalue(), region={"box": box})
            assert turn.masks and turn.masks[0].shape == scene.image.shape[:2]
        else:  # a region off the image: refused after the image was read, before any call
            with pytest.raises(InvalidInputError, match="outside"):
                agent.chat("segment this", image=buf.getvalue(), region={"box": [0, 0, 1e6, 5]})


class RecolourThenLook:
    """A scripted policy that records the images it is shown: "make this blue"
    recolours the region's box blue; any other request is answered in words."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray | None] = []

    def step(self, messages, images, frame_index, regions, objects=None):
        said = messages[-1]["content"]
        if said.startswith("["):
            return Step(text="Done.")
        self.seen.append(images[0] if images else None)
        if said.endswith(("undo that", "redo that")):
            return Step(calls=[HybridCall(tool="history", args={"op": said.split()[-2]})])
        if said.endswith("make this blue"):
            box = [float(v) for v in regions[0]["box"]]
            return Step(
                calls=[HybridCall(tool="edit", args={"op": "recolor", "box": box, "color": "blue"})]
            )
        return Step(text="I see it.")


def test_a_session_works_on_its_current_image_and_undo_restores_the_one_before(tmp_path, scene):
    policy = RecolourThenLook()
    agent = _agent(tmp_path, policy)
    box = tuple(int(v) for v in scene.boxes[0])
    first = agent.chat("make this blue", image=scene.image, region=box)
    assert first.images and first.calls[0].status == "ok"
    edited = first.images[0]
    cur = agent.current(first.session)
    assert cur["source"] == "edited" and np.array_equal(agent.current_media(first.session), edited)
    # A request sent without an image works on the session's current one: the edited image.
    agent.chat("what is here?", session=first.session)
    assert np.array_equal(policy.seen[-1], edited)
    # Undo: the upload is current again, and the next request sees it; redo brings the edit back.
    assert agent.undo(first.session)["source"] == "upload"
    agent.chat("and now?", session=first.session)
    assert np.array_equal(policy.seen[-1], scene.image)
    assert agent.redo(first.session)["id"] == cur["id"]
    with pytest.raises(InvalidInputError, match="nothing to redo"):
        agent.redo(first.session)
    # Each turn records the image it worked on, named "current" when it was not sent with it.
    turns = agent.history(first.session)
    names = [[a["name"] for a in t["messages"][0]["artifacts"]] for t in turns]
    assert names == [["image"], ["current"], ["current"]]
    nothing = agent.chat("hello")  # a session with no image: nothing to undo, said in words
    assert agent.chat("undo that", session=nothing.session).text.startswith(
        "I couldn't undo: there is nothing to undo"
    )
    # Undo and redo said in words: the agent's history tool, through the graph.
    said = agent.chat("undo that", session=first.session)
    assert said.calls[0].tool == "history" and said.calls[0].status == "ok"
    assert said.text == "I undid the last change: the image before it is current again."
    assert agent.current(first.session)["source"] == "upload"
    agent.chat("redo that", session=first.session)
    assert agent.current(first.session)["id"] == cur["id"]
    # A new session starts with nothing current: no image is carried over.
    other = agent.chat("hello")
    assert policy.seen[-1] is None and agent.current(other.session) is None


def test_a_cancelled_turn_stops_before_its_next_step_and_is_stored_failed(tmp_path, scene):
    """Cancelled while waiting: never runs. Cancelled while running (its client gone after
    the first step): the call made stays recorded, the next route is not asked."""
    from switchboard.agent.graph import CANCELLED

    box = [float(v) for v in scene.boxes[0]]
    policy = Recorder()
    agent = _agent(tmp_path, policy)
    waiting = agent.accept("segment this", image=scene.image, region=box)
    waiting.cancel.set()
    turn = agent.run(waiting)
    assert turn.text == CANCELLED and not turn.calls and not policy.seen
    stored = agent.store.turn(waiting.turn_id)
    assert stored["status"] == "failed" and stored["error"] == "cancelled"

    class LeavesAfterTheFirstStep(Recorder):
        def step(self, messages, images, frame_index, regions, objects=None):
            out = super().step(messages, images, frame_index, regions, objects)
            running.cancel.set()  # the client goes while the call runs
            return out

    leaving = LeavesAfterTheFirstStep()
    agent = _agent(tmp_path / "b", leaving)
    running = agent.accept("segment this", image=scene.image, region=box)
    turn = agent.run(running)
    assert turn.text == CANCELLED and [c.tool for c in turn.calls] == ["segment"]
    assert len(leaving.seen) == 1  # the route after the segment call was never asked
    assert agent.store.turn(running.turn_id)["status"] == "failed"
    assert not agent.store.pending_turns()


class RecolourTheVideo:
    """A scripted policy: recolour the object in the region's box through the video."""

    def __init__(self) -> None:
        self.frames: list[int | None] = []

    def step(self, messages, images, frame_index, regions, objects=None):
        self.frames.append(len(frame_index))
        if messages[-1]["content"].startswith("[edit"):
            return Step(text="Done.")
        if "how" in messages[-1]["content"]:
            return Step(text="It looks fine.")
        args = {"op": "recolor", "color": "red", "box": regions[0]["box"], "steps": 4}
        return Step(calls=[HybridCall(tool="edit", args=args)])


def test_an_edited_video_is_stored_as_an_mp4_and_becomes_the_current_video(tmp_path):
    from switchboard.core import Video
    from switchboard.world.video import generate_video_edit

    pair = generate_video_edit(31, "recolor")
    clip = pair.before
    i = [o.id for o in clip.objects].index(pair.target)
    box = tuple(int(v) for v in clip.boxes[0, i])
    agent = _agent(tmp_path, RecolourTheVideo())
    turn = agent.chat("make this red", video=clip.frames, region=box)
    assert turn.calls[0].status == "ok", turn.calls[0].error
    (made,) = turn.videos
    assert made.frames.shape == clip.frames.shape
    assert "frames of the video" in turn.text
    (reply,) = [m for m in agent.history(turn.session)[0]["messages"] if m["role"] == "assistant"]
    (stored,) = [a for a in reply["artifacts"] if a["kind"] == "edited"]
    data, media_type = agent.store.artifact(stored["sha256"])
    assert media_type == "video/mp4" and data[4:8] == b"ftyp"
    cur = agent.current(turn.session)
    assert cur["kind"] == "video" and cur["source"] == "edited"
    again = agent.current_media(turn.session)
    assert isinstance(again, Video) and again.num_frames == clip.num_frames
    # The mp4 is lossy but close to what the edit made.
    gap = np.abs(again.frames.astype(np.int16) - made.frames.astype(np.int16)).mean()
    assert gap < 3.0
    # A follow-up without media works on the edited video; undo brings the upload back.
    agent.chat("how does it look?", session=turn.session)
    assert agent.undo(turn.session)["source"] == "upload"


def test_closing_an_agent_on_postgresql_closes_the_checkpointers_connections(
    tmp_path, postgres_url
):
    """``Agent.load`` on PostgreSQL opens a pool for LangGraph's saver; ``close`` closes it (a
    process that makes agents one after another does not keep their connections)."""
    agent = Agent.load(
        home=tmp_path, database=postgres_url, policy=SegmentTheBox(), registry=Registry(BUILTINS)
    )
    pool = agent.checkpointer.conn
    assert not pool.closed
    agent.close()
    assert pool.closed
