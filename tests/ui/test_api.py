"""The HTTP API over a real Agent (store, graph, SAM) with a scripted policy: routes, auth and
ownership, upload limits and the typed refusals (401, 404, 413, 415, 422), the SSE stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from switchboard.agent.graph import Step
from switchboard.agent.sdk import Agent
from switchboard.core import HybridCall, Registry
from switchboard.core.media import decode_image, encode_png
from switchboard.specialists import BUILTINS
from switchboard.ui.server import create_app
from switchboard.world.scene import generate_scene

A, B = "token-a", "token-b"


class SegmentTheBox:
    def step(self, messages, images, frame_index, regions, objects=None):
        if messages[-1]["content"].startswith("[segment"):
            return Step(text="Here it is.")
        if not regions:
            return Step(text="Draw a box, please.")
        return Step(calls=[HybridCall(tool="segment", args={"box": regions[0]["box"]})])


@pytest.fixture(scope="module")
def scene():
    return generate_scene(5)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("api")
    agent = Agent.load(home=home, policy=SegmentTheBox(), registry=Registry(BUILTINS))
    app = create_app(agent, tokens=[A, B], max_upload_bytes=2_000_000)
    with TestClient(app) as c:
        yield c


def _h(token):
    return {"Authorization": f"Bearer {token}"}


def _box(scene):
    return [int(v) for v in scene.boxes[0]]


def test_health_specialists_and_openapi(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok"
    assert health["calls"] == "text"  # a scripted policy makes the calls it was given
    specs = client.get("/api/specialists", headers=_h(A)).json()
    assert {s["name"] for s in specs} == set(BUILTINS) | {"history"}  # + the agent's undo/redo
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert "/api/sessions/{session_id}/messages" in paths and "/api/artifacts/{sha256}" in paths
    # The bearer scheme is declared, and every /api route but health asks for it.
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of SWITCHBOARD_API_TOKEN's tokens.",
    }
    for path, ops in paths.items():
        for op in ops.values():
            assert ("security" in op) == (path != "/api/health"), path

    # One schema per resource (core/wire.py): what the SDK parses is what OpenAPI documents.
    def returns(path, method):
        body = paths[path][method]["responses"]
        ok = body.get("200") or body.get("201")
        return ok["content"]["application/json"]["schema"]

    assert returns("/api/sessions/{session_id}/messages", "post")["$ref"].endswith("/TurnReply")
    assert returns("/api/sessions/{session_id}", "get")["$ref"].endswith("/SessionDetail")
    assert returns("/api/sessions", "get")["items"]["$ref"].endswith("/SessionSummary")
    assert returns("/api/health", "get")["$ref"].endswith("/Health")
    turn = spec["components"]["schemas"]["TurnReply"]["properties"]
    assert {"text", "outcome", "calls", "boxes", "tracks", "messages", "current"} <= set(turn)


def test_the_page_and_its_files_are_served_without_a_token(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js">' in page.text
    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert client.get("/static/../server.py").status_code == 404
    assert client.get("/api/health").json()["auth"] is True  # the page asks for a token


def test_tokens_are_required_and_checked(client):
    assert client.get("/api/sessions").status_code == 401
    assert client.get("/api/sessions", headers=_h("nope")).status_code == 401
    assert client.get("/api/sessions", headers={"Authorization": "Basic x"}).status_code == 401
    said = client.get("/api/sessions", headers={"Authorization": f"Basic {A}"})
    assert said.status_code == 401 and said.headers["WWW-Authenticate"] == "Bearer"
    assert said.json()["detail"] == "a bearer token is required"
    assert client.get("/api/sessions", headers=_h(A[:-1])).json()["detail"] == "invalid token"
    assert client.get("/api/sessions", headers=_h(A)).status_code == 200
    # The scheme's name is case-insensitive (RFC 7235), before the body and after it.
    lower = {"Authorization": f"bearer {A}"}
    assert client.get("/api/sessions", headers=lower).status_code == 200
    assert client.post("/api/sessions", headers=lower).status_code == 201


def test_a_token_is_matched_whole_against_each_known_one():
    from switchboard.ui.auth import Tokens, owner_id

    tokens = Tokens(["alpha-token", "beta-token"])
    assert tokens.owner("beta-token") == owner_id("beta-token") != owner_id("alpha-token")
    for wrong in ("beta-toke", "beta-tokenX", "", "BETA-TOKEN", "alpha-token "):
        assert tokens.owner(wrong) is None
    assert tokens.header_ok("Bearer alpha-token") and tokens.header_ok("BEARER alpha-token")
    assert not tokens.header_ok("Bearer") and not tokens.header_ok(None)
    assert not tokens.header_ok("Token alpha-token")
    assert Tokens([]).header_ok(None) and not Tokens([])


def test_a_turn_round_trips_and_stays_with_its_owner(client, scene):
    sid = client.post("/api/sessions", headers=_h(A)).json()["id"]
    r = client.post(
        f"/api/sessions/{sid}/messages",
        headers=_h(A),
        data={"text": "segment this", "region": json.dumps(_box(scene))},
        files={"file": ("s.png", encode_png(scene.image), "image/png")},
    )
    assert r.status_code == 200, r.text
    turn = r.json()
    assert turn["text"] == "Here it is." and turn["calls"][0]["tool"] == "segment"
    (mask,) = [a for a in turn["messages"][1]["artifacts"] if a["kind"] == "mask"]
    got = client.get(f"/api/artifacts/{mask['sha256']}", headers=_h(A))
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    m = decode_image(got.content, convert=True)[..., 0] > 0
    assert m.any() and m.shape == scene.image.shape[:2]
    # The session survives in the list and its history; another token sees neither.
    assert sid in [s["id"] for s in client.get("/api/sessions", headers=_h(A)).json()]
    assert len(client.get(f"/api/sessions/{sid}", headers=_h(A)).json()["turns"]) == 1
    assert client.get(f"/api/sessions/{sid}", headers=_h(B)).status_code == 404
    assert sid not in [s["id"] for s in client.get("/api/sessions", headers=_h(B)).json()]
    assert client.get(f"/api/artifacts/{mask['sha256']}", headers=_h(B)).status_code == 404
    r = client.post(f"/api/sessions/{sid}/messages", headers=_h(B), data={"text": "hi"})
    assert r.status_code == 404


def test_bad_requests_get_typed_refusals(client, scene):
    sid = client.post("/api/sessions", headers=_h(A)).json()["id"]
    url = f"/api/sessions/{sid}/messages"
    assert (
        client.post("/api/sessions/nope/messages", headers=_h(A), data={"text": "hi"}).status_code
        == 404
    )
    r = client.post(
        url, headers=_h(A), data={"text": "x"}, files={"file": ("a.txt", b"hello", "text/plain")}
    )
    assert r.status_code == 415
    big = np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8)
    r = client.post(
        url,
        headers=_h(A),
        data={"text": "x"},
        files={"file": ("big.png", encode_png(big), "image/png")},
    )
    assert r.status_code == 413
    assert client.post(url, headers=_h(A), data={}).status_code == 422  # no text
    r = client.post(
        url,
        headers=_h(A),
        data={"text": "x", "region": "{nope"},
        files={"file": ("s.png", encode_png(scene.image), "image/png")},
    )
    assert r.status_code == 422
    r = client.post(
        url,
        headers=_h(A),
        data={"text": "x", "region": "[0, 0, 9999, 10]"},
        files={"file": ("s.png", encode_png(scene.image), "image/png")},
    )
    assert r.status_code == 422 and "outside" in r.json()["detail"]
    r = client.post(
        url,
        headers=_h(A),
        data={"text": "x"},
        files={"file": ("s.png", b"\x89PNG broken", "image/png")},
    )
    assert r.status_code == 422
    for bad in ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "a" * 64, "0" * 63):
        assert client.get(f"/api/artifacts/{bad}", headers=_h(A)).status_code == 404
    # Nothing refused was stored as a turn.
    assert client.get(f"/api/sessions/{sid}", headers=_h(A)).json()["turns"] == []


def test_the_token_and_the_size_are_checked_before_the_body_is_read(client):
    sid = client.post("/api/sessions", headers=_h(A)).json()["id"]
    sent = []

    def body():  # 16 MB, counted as it is read
        for _ in range(256):
            sent.append(1)
            yield b"x" * 65536

    r = client.post(
        f"/api/sessions/{sid}/messages",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code == 401 and len(sent) <= 1
    r = client.post(
        f"/api/sessions/{sid}/messages", headers={**_h(A), "content-length": "9" * 9}, content=b""
    )
    assert r.status_code == 413 and "largest upload" in r.json()["detail"]
    assert r.headers["connection"] == "close"  # the rest of a refused body is not read


def test_the_stream_sends_the_agent_events_then_the_turn(client, scene):
    sid = client.post("/api/sessions", headers=_h(A)).json()["id"]
    png = ("s.png", encode_png(scene.image), "image/png")
    with client.stream(
        "POST",
        f"/api/sessions/{sid}/messages/stream",
        headers=_h(A),
        data={"text": "segment", "region": json.dumps(_box(scene))},
        files={"file": png},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = list(r.iter_lines())
    kinds = [ln.split(": ", 1)[1] for ln in lines if ln.startswith("event: ")]
    assert kinds == ["route", "call_started", "call_finished", "route", "text", "turn"]
    # The stream's turn is the schema POST …/messages answers with.
    from switchboard.core.wire import TurnReply

    last = json.loads([ln for ln in lines if ln.startswith("data: ")][-1].split(": ", 1)[1])
    turn = TurnReply.model_validate(last["turn"])
    assert turn.session == sid and turn.calls[0].tool == "segment" and turn.outcome == "ok"
    assert [a.kind for a in turn.messages[-1].artifacts] == ["mask"]


def test_the_sdk_client_has_the_agents_interface_over_http(client, scene, tmp_path):
    """``Client(url)`` against this server (httpx over the app's ASGI transport): the same
    Turn as the embedded Agent, events, sessions, history, typed errors."""
    from switchboard.agent import Client
    from switchboard.agent.client import ServerError
    from switchboard.core.errors import InvalidInputError

    sdk = Client("http://testserver", token=A)
    sdk.http = client  # the TestClient is an httpx.Client on the app
    client.headers["Authorization"] = f"Bearer {A}"
    try:
        turn = sdk.chat("segment this", image=scene.image, region=tuple(_box(scene)))
        assert turn.text == "Here it is." and turn.calls[0].tool == "segment"
        (mask,) = turn.masks
        assert mask.shape == scene.image.shape[:2] and mask.any()
        assert {p.name for p in turn.save(tmp_path)} >= {"reply.txt", "calls.json", "mask_0.png"}
        events = list(
            sdk.stream("segment", image=scene.image, region=_box(scene), session=turn.session)
        )
        assert [e["type"] for e in events][-1] == "turn"
        assert events[-1]["turn"].masks[0].shape == mask.shape
        assert len(sdk.history(turn.session)) == 2
        assert turn.session in [s["id"] for s in sdk.sessions()]
        with pytest.raises(InvalidInputError, match="outside"):
            sdk.chat("x", image=scene.image, region=(0, 0, 9999, 10))
        with pytest.raises(ServerError) as err:
            sdk.history("no-such-session")
        assert err.value.status == 404
    finally:
        client.headers.pop("Authorization", None)


def test_sessions_are_renamed_and_deleted_by_their_owner_only(client, scene):
    sid = client.post("/api/sessions", headers=_h(A)).json()["id"]
    r = client.post(
        f"/api/sessions/{sid}/messages",
        headers=_h(A),
        data={"text": "segment this", "region": json.dumps(_box(scene))},
        files={"file": ("s.png", encode_png(scene.image), "image/png")},
    )
    assert r.status_code == 200 and r.json()["outcome"] == "ok"
    (listed,) = [s for s in client.get("/api/sessions", headers=_h(A)).json() if s["id"] == sid]
    assert listed["title"] == "segment this" and listed["named"] is False
    # Someone else's session is as unknown as a made-up one: 404, and nothing changes.
    for who, target in ((B, sid), (A, "f" * 32)):
        assert (
            client.patch(
                f"/api/sessions/{target}", headers=_h(who), json={"title": "mine now"}
            ).status_code
            == 404
        )
        assert client.delete(f"/api/sessions/{target}", headers=_h(who)).status_code == 404
    assert client.patch(f"/api/sessions/{sid}", json={"title": "x"}).status_code == 401
    assert client.delete(f"/api/sessions/{sid}").status_code == 401
    r = client.patch(f"/api/sessions/{sid}", headers=_h(A), json={"title": "  the red  square "})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "the red square" and r.json()["named"] is True
    (listed,) = [s for s in client.get("/api/sessions", headers=_h(A)).json() if s["id"] == sid]
    assert listed["title"] == "the red square"
    for bad, said in (
        ("", "The session title is empty."),
        ("   ", "The session title is empty."),
        ("x" * 121, "The session title is 121 characters long; the limit is 120."),
    ):
        r = client.patch(f"/api/sessions/{sid}", headers=_h(A), json={"title": bad})
        assert r.status_code == 422 and r.json()["detail"] == said, r.text
    r = client.patch(f"/api/sessions/{sid}", headers=_h(A), json={"name": "x"})
    assert r.status_code == 422 and r.json()["detail"] == "The session title is missing."
    # The history says what each turn achieved, as the live turn did.
    (turn,) = client.get(f"/api/sessions/{sid}", headers=_h(A)).json()["turns"]
    assert turn["outcome"] == "ok"
    mask = next(a for a in turn["messages"][1]["artifacts"] if a["kind"] == "mask")
    assert client.delete(f"/api/sessions/{sid}", headers=_h(A)).status_code == 204
    assert client.get(f"/api/sessions/{sid}", headers=_h(A)).status_code == 404
    assert sid not in [s["id"] for s in client.get("/api/sessions", headers=_h(A)).json()]
    # (its mask's bytes stay reachable only through A's other sessions holding the same hash)
    assert client.get(f"/api/artifacts/{mask['sha256']}", headers=_h(B)).status_code == 404
    assert client.delete(f"/api/sessions/{sid}", headers=_h(A)).status_code == 404


def test_the_current_image_is_shown_undone_and_redone_by_its_owner_only(client, scene):
    sid = client.post("/api/sessions", headers=_h(A)).json()["id"]
    assert client.get(f"/api/sessions/{sid}", headers=_h(A)).json()["current"] is None
    sent = []
    for image in (scene.image, generate_scene(6).image):
        r = client.post(
            f"/api/sessions/{sid}/messages",
            headers=_h(A),
            data={"text": "segment this", "region": json.dumps(_box(scene))},
            files={"file": ("s.png", encode_png(image), "image/png")},
        )
        assert r.status_code == 200, r.text
        sent.append(r.json()["messages"][0]["artifacts"][0]["sha256"])
    cur = client.get(f"/api/sessions/{sid}", headers=_h(A)).json()["current"]
    assert (cur["sha256"], cur["source"]) == (sent[1], "upload")
    for who, code in ((B, 404), (None, 401)):
        assert (
            client.post(f"/api/sessions/{sid}/undo", headers=_h(who) if who else {}).status_code
            == code
        )
    r = client.post(f"/api/sessions/{sid}/undo", headers=_h(A))
    assert r.status_code == 200 and r.json()["current"]["sha256"] == sent[0]
    r = client.post(f"/api/sessions/{sid}/undo", headers=_h(A))
    assert r.status_code == 409 and r.json()["detail"] == "There is nothing to undo."
    r = client.post(f"/api/sessions/{sid}/redo", headers=_h(A))
    assert r.status_code == 200 and r.json()["current"]["sha256"] == sent[1]
    # A request sent without a file works on the current image (the turn records which).
    r = client.post(
        f"/api/sessions/{sid}/messages",
        headers=_h(A),
        data={"text": "and this", "region": json.dumps(_box(scene))},
    )
    assert r.status_code == 200 and r.json()["outcome"] == "ok", r.text
    (att,) = r.json()["messages"][0]["artifacts"]
    assert (att["sha256"], att["name"]) == (sent[1], "current")
    # The turn's JSON says what is current after it (the page shows it without asking again).
    now = client.get(f"/api/sessions/{sid}", headers=_h(A)).json()["current"]
    assert r.json()["current"] == now and now["sha256"] == sent[1]


def test_refusals_are_sentences_about_the_input(client, scene):
    sid = client.post("/api/sessions", headers=_h(A)).json()["id"]
    url = f"/api/sessions/{sid}/messages"
    long = "segment the red circle " * 183  # 4209 characters
    for route in (url, url + "/stream"):
        r = client.post(route, headers=_h(A), data={"text": long})
        assert r.status_code == 422
        assert r.json() == {
            "detail": f"Your message is {len(long)} characters long; the limit is 4000."
        }
    for text in (None, "", "   "):
        r = client.post(url, headers=_h(A), data={} if text is None else {"text": text})
        assert r.status_code == 422 and r.json() == {"detail": "Your message is empty."}, r.text
    # A text file named .png: a sentence naming the file, never PIL's "<_io.BytesIO …>".
    for route in (url, url + "/stream"):
        r = client.post(
            route,
            headers=_h(A),
            data={"text": "segment the red circle"},
            files={"file": ("photo.png", b"just some words\n" * 20, "image/png")},
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == (
            "photo.png is not an image I can read (it may be damaged or not an image)."
        )
    r = client.post(
        url,
        headers=_h(A),
        data={"text": "x"},
        files={"file": ("notes.txt", b"hello", "text/plain")},
    )
    assert r.status_code == 415
    assert r.json()["detail"].startswith("notes.txt is of type text/plain;")
    r = client.post(
        url,
        headers=_h(A),
        data={"text": "x", "region": "{nope"},
        files={"file": ("s.png", encode_png(scene.image), "image/png")},
    )
    assert r.status_code == 422 and "could not be read" in r.json()["detail"]
    assert client.get(f"/api/sessions/{sid}", headers=_h(A)).json()["turns"] == []


def test_the_favicon_is_served(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\x00\x00\x01\x00"  # an ICO
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert 'href="/static/favicon.svg"' in client.get("/").text
    assert client.get("/api/health").json()["max_text"] == 4000


MALFORMED_REGIONS = [
    '{"box": "abcd"}', '{"box": 5}', '{"box": null}', '{"point": {"x": 1}}',
    '{"point": [NaN, 3]}', '{"box": [0, 0, Infinity, 5]}', "[" * 100_000,
    '{"mask": {"size": [1000000, 1000000], "counts": [0, 1]}}',
]  # fmt: skip


@pytest.mark.parametrize("region", MALFORMED_REGIONS)
def test_a_malformed_region_is_a_422_or_an_error_event_never_a_500(client, scene, region):
    """Each probe that used to crash the server (500, a RecursionError, a 931 GiB allocation) or
    end a stream without a word: a sentence on the plain route, an ``error`` event on the
    stream, and nothing stored either way."""
    sid = client.post("/api/sessions", headers=_h(A)).json()["id"]
    png = ("s.png", encode_png(scene.image), "image/png")
    form = {"text": "segment this", "region": region}
    r = client.post(f"/api/sessions/{sid}/messages", headers=_h(A), data=form, files={"file": png})
    assert r.status_code == 422, r.text
    said = r.json()["detail"].lower()
    assert any(w in said for w in ("region", "box", "point", "mask")), said
    with client.stream(
        "POST",
        f"/api/sessions/{sid}/messages/stream",
        headers=_h(A),
        data={"text": "segment this", "region": region},
        files={"file": png},
    ) as s:
        lines = list(s.iter_lines())
    if s.status_code == 200:  # the stream had begun: it must end with an error event
        kinds = [ln.split(": ", 1)[1] for ln in lines if ln.startswith("event: ")]
        assert kinds == ["error"], lines
        assert "NaN" not in "".join(lines)
    else:
        assert s.status_code == 422


class Slow:
    """Answers after a pause (a turn that holds the server)."""

    def step(self, messages, images, frame_index, regions, objects=None):
        import time

        time.sleep(1.5)
        return Step(text="Done waiting.")


def test_past_the_queue_bound_a_request_is_refused_with_retry_after(tmp_path, monkeypatch):
    import threading

    from switchboard.core.config import get_settings

    monkeypatch.setenv("SWITCHBOARD_MAX_QUEUED_TURNS", "1")
    get_settings.cache_clear()
    try:
        agent = Agent.load(home=tmp_path, policy=Slow(), registry=Registry(BUILTINS))
        app = create_app(agent, tokens=[A])
    finally:
        get_settings.cache_clear()
    with TestClient(app) as c:
        sid = c.post("/api/sessions", headers=_h(A)).json()["id"]
        url = f"/api/sessions/{sid}/messages"
        first = []
        t = threading.Thread(
            target=lambda: first.append(c.post(url, headers=_h(A), data={"text": "hello"}))
        )
        t.start()
        deadline = 50
        while not agent.store.pending_turns() and deadline:  # the first turn is running
            threading.Event().wait(0.05)
            deadline -= 1
        r = c.post(url, headers=_h(A), data={"text": "hello again"})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "busy" in r.json()["detail"]
        t.join(30)
        assert first[0].status_code == 200  # the one admitted ran; the refused one left no turn
        assert len(c.get(f"/api/sessions/{sid}", headers=_h(A)).json()["turns"]) == 1
        assert c.post(url, headers=_h(A), data={"text": "now"}).status_code == 200


def test_events_and_turns_are_strict_json():
    """No bare NaN reaches a client (a browser's JSON.parse rejects it): non-finite numbers are
    null, in the SSE events and the turn JSON alike."""
    from switchboard.ui.server import finite, strict_json

    event = {"type": "call_finished", "args": {"box": [1.0, float("nan"), 3.0, float("inf")]}}
    text = strict_json(event)
    assert json.loads(text) == {"type": "call_finished", "args": {"box": [1.0, None, 3.0, None]}}
    assert "NaN" not in text and "Infinity" not in text
    assert finite({"score": float("-inf"), "n": 2}) == {"score": None, "n": 2}


def test_uploaded_videos_leave_no_file_behind(tmp_path):
    """A video waits in <home>/uploads only while its request is accepted: none is left after
    a turn or a refused region, and what a killed process left is swept when a server starts."""
    import os
    import time

    from switchboard.core.media import Video, save_video
    from switchboard.world.video import generate_video

    clip = generate_video(3)
    path = tmp_path / "clip.mp4"
    save_video(Video(frames=clip.frames[:6], fps=clip.fps), path)
    uploads = tmp_path / "home" / "uploads"
    uploads.mkdir(parents=True)
    stale = uploads / "tmpkilled.mp4"
    stale.write_bytes(b"left by a killed process")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    agent = Agent.load(home=tmp_path / "home", policy=SegmentTheBox(), registry=Registry(BUILTINS))
    with TestClient(create_app(agent, tokens=[A])) as c:
        assert not stale.exists()
        sid = c.post("/api/sessions", headers=_h(A)).json()["id"]
        url = f"/api/sessions/{sid}/messages"
        video = {"file": ("clip.mp4", path.read_bytes(), "video/mp4")}
        ok = c.post(url, headers=_h(A), data={"text": "what is this?"}, files=video)
        assert ok.status_code == 200
        bad = c.post(
            url,
            headers=_h(A),
            files=video,
            data={"text": "this one", "region": json.dumps({"box": "abcd"})},
        )
        assert bad.status_code == 422 and "box" in bad.json()["detail"]
        assert list(uploads.iterdir()) == []
