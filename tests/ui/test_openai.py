"""The OpenAI-compatible route (``/v1``) driven by the real ``openai`` client (and LangChain's
``ChatOpenAI``) against the server on a real socket, over the default agent: the trained router
and the real specialists on ShapeWorld scenes."""

from __future__ import annotations

import base64
import re

import httpx
import numpy as np
import openai
import pytest
from switchboard.agent.sdk import Agent
from switchboard.core.media import decode_image, encode_png
from switchboard.ui.server import create_app
from switchboard.world.scene import generate_scene

A, B = "token-a", "token-b"
LINK = re.compile(r"!\[mask 1\]\((http://[^)\s]+)\)")


def _scene_with(color: str, shape: str):
    """The first scene from seed 100 on with a ``color`` ``shape`` and at most four objects."""
    for seed in range(100, 400):
        scene = generate_scene(seed)
        found = [i for i, o in enumerate(scene.objects) if (o.color, o.shape) == (color, shape)]
        if len(found) == 1 and len(scene.objects) <= 4:
            return scene, found[0]
    raise AssertionError(f"no scene with one {color} {shape}")


def _data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode()


def _ask(text: str, image: np.ndarray | None = None, url: str | None = None) -> dict:
    """A user message: ``text`` and an ``image_url`` part (``image`` as a data URL, or
    ``url``) when given."""
    content = [{"type": "text", "text": text}]
    url = _data_url(image) if image is not None else url
    if url is not None:
        content.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": "user", "content": content}


@pytest.fixture(scope="module")
def server(tmp_path_factory, serving):
    agent = Agent.load(home=tmp_path_factory.mktemp("openai"))
    with serving(create_app(agent, tokens=[A, B])) as port:
        yield agent, f"http://127.0.0.1:{port}"
    agent.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key=A, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def red_circle():
    return _scene_with("red", "circle")


@pytest.fixture(scope="module")
def segmented(client, red_circle):
    """One image turn: "segment the red circle" with the scene as a data URL."""
    scene, _ = red_circle
    return client.chat.completions.create(
        model="switchboard", messages=[_ask("segment the red circle", scene.image)], user="seg"
    )


def test_the_model_is_listed_and_a_text_turn_answers(client):
    assert [m.id for m in client.models.list()] == ["switchboard"]
    assert client.models.retrieve("switchboard").id == "switchboard"
    reply = client.chat.completions.create(
        model="switchboard", messages=[{"role": "user", "content": "What can you do?"}]
    )
    (choice,) = reply.choices
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content.strip() and "/api/artifacts/" not in choice.message.content
    turn = reply.model_extra["switchboard"]
    assert turn["calls"] == [] and turn["artifacts"] == [] and len(turn["session"]) == 32


def test_an_image_turn_links_a_mask_that_downloads(segmented, red_circle, server):
    """The reply says what it did and links the mask; the link is signed with the caller's
    token, so it downloads with no header (as a chat client shows it) — and only the link."""
    scene, k = red_circle
    content = segmented.choices[0].message.content
    turn = segmented.model_extra["switchboard"]
    assert [c["tool"] for c in turn["calls"]] == ["segment"] and turn["outcome"] == "ok"
    (url,) = LINK.findall(content)
    assert content.split("\n\n")[0].strip() and "mask" in content.split("\n\n")[0]
    assert [a["url"] for a in turn["artifacts"] if a["kind"] == "mask"] == [url]
    got = httpx.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    mask = decode_image(got.content, convert=True)[..., 0] > 0
    truth = scene.masks[k].astype(bool)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.8, iou
    bare = url.split("?")[0]
    assert httpx.get(bare).status_code == 401  # no token, no signature
    assert httpx.get(bare + "?sig=" + "0" * 32).status_code == 401
    assert httpx.get(bare + "?sig=é").status_code == 422  # not a signature at all
    assert httpx.get(bare, headers={"Authorization": f"Bearer {B}"}).status_code == 404


def test_a_streamed_turn_assembles_to_the_plain_reply(client, segmented, red_circle):
    """The same request streamed (another session): the deltas join to the plain reply's
    content; the agent's events come on the way, the turn on the last chunk."""
    scene, _ = red_circle
    stream = client.chat.completions.create(
        model="switchboard",
        messages=[_ask("segment the red circle", scene.image)],
        user="stream",
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == segmented.choices[0].message.content
    events = [c.model_extra["switchboard"]["event"]["type"] for c in chunks
              if "event" in (c.model_extra.get("switchboard") or {})]  # fmt: skip
    assert "call_started" in events and "call_finished" in events
    assert chunks[-1].choices[0].finish_reason == "stop"
    turn = chunks[-1].model_extra["switchboard"]
    assert turn["session"] != segmented.model_extra["switchboard"]["session"]
    assert [c["tool"] for c in turn["calls"]] == ["segment"]


def test_a_conversation_keeps_its_session(client, segmented, red_circle, server):
    """A client that resends the conversation continues its session: the follow-up carries
    no image and works on the session's; the ``user`` field and the header keep it too."""
    agent, _ = server
    scene, _ = red_circle
    first = segmented.model_extra["switchboard"]["session"]
    follow = client.chat.completions.create(
        model="switchboard",
        messages=[
            {"role": "system", "content": "You are helpful."},
            _ask("segment the red circle", scene.image),
            {"role": "assistant", "content": segmented.choices[0].message.content},
            _ask("how many shapes are there?"),
        ],
    )
    turn = follow.model_extra["switchboard"]
    assert turn["session"] == first
    assert _counts(follow.choices[0].message.content, len(scene.objects))
    assert len(agent.history(first, owner=_owner(A))) == 2
    again = client.chat.completions.create(
        model="switchboard", messages=[_ask("how many shapes are there?")], user="seg"
    )
    assert again.model_extra["switchboard"]["session"] == first
    head = client.chat.completions.with_raw_response.create(
        model="switchboard",
        messages=[_ask("what colour is the circle?")],
        extra_headers={"X-Switchboard-Session": first},
    )
    assert head.headers["X-Switchboard-Session"] == first
    assert head.parse().model_extra["switchboard"]["session"] == first
    assert len(agent.history(first, owner=_owner(A))) == 4
    # Another token's client cannot reach it by name, by header or by history.
    other = openai.OpenAI(base_url=client.base_url, api_key=B, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.chat.completions.create(
            model="switchboard",
            messages=[_ask("hi")],
            extra_headers={"X-Switchboard-Session": first},
        )


def test_a_video_sent_as_an_mp4_data_url_is_tracked(client, tmp_path):
    """An mp4 in an ``image_url`` part (what chat clients can send): the agent tracks the
    object; the reply links the tracks' JSON, which downloads."""
    from switchboard.core.media import Video, save_video
    from switchboard.world.video import generate_video

    clip = generate_video(5, num_frames=8)  # a red square and a cyan cross, bouncing
    mp4 = save_video(Video(frames=clip.frames, fps=clip.fps), tmp_path / "c.mp4").read_bytes()
    url = "data:video/mp4;base64," + base64.b64encode(mp4).decode()
    reply = client.chat.completions.create(
        model="switchboard", messages=[_ask("track the red square", url=url)]
    )
    turn = reply.model_extra["switchboard"]
    assert [c["tool"] for c in turn["calls"]] == ["track"] and turn["outcome"] == "ok"
    (track,) = turn["tracks"]
    assert len(track["frames"]) >= 6
    json_link = re.compile(r"\[boxes and tracks \(JSON\)\]\((http://[^)\s]+)\)")
    (link,) = json_link.findall(reply.choices[0].message.content)
    got = httpx.get(link)
    assert got.status_code == 200 and got.json()["tracks"][0]["frames"] == track["frames"]


def test_bad_requests_get_openai_errors(client, server):
    _, base = server
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="switchboard", messages=[_ask("hi", url="https://example.com/cat.png")]
        )
    assert err.value.status_code == 400 and err.value.code == "remote_url_not_supported"
    assert "fetches no URLs" in err.value.message
    urls = ("data:image/png;base64,@@@", "data:image/png,notbase64", "data:text/plain;base64,aGk=")
    for url in urls:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="switchboard", messages=[_ask("hi", url=url)])
        assert err.value.body["type"] == "invalid_request_error", url
    broken = "data:image/png;base64," + base64.b64encode(b"\x89PNG not really").decode()
    with pytest.raises(openai.BadRequestError, match="not an image I can read"):
        client.chat.completions.create(model="switchboard", messages=[_ask("hi", url=broken)])
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[_ask("hi")])
    assert err.value.code == "model_not_found"
    nobody = openai.OpenAI(base_url=base + "/v1", api_key="wrong-token", max_retries=0)
    for headers in ({}, {"Authorization": openai.omit}):  # a wrong token; no token at all
        with pytest.raises(openai.AuthenticationError) as err:
            nobody.chat.completions.create(
                model="switchboard", messages=[_ask("hi")], extra_headers=headers
            )
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            nobody.models.list(extra_headers=headers)
    for messages, said in (
        ([{"role": "assistant", "content": "hi"}], "last message must be the user's"),
        ([{"role": "user", "content": "  "}], "has no text"),
        ([{"role": "user", "content": "x" * 4001}], "the limit is 4000"),
        ([{"content": "hi"}], "has no role"),
    ):
        with pytest.raises(openai.BadRequestError, match=said):
            client.chat.completions.create(model="switchboard", messages=messages)
    with pytest.raises(openai.BadRequestError, match="takes no tools"):
        client.chat.completions.create(
            model="switchboard",
            messages=[_ask("hi")],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    # Not JSON at all: still OpenAI's error object.
    r = httpx.post(base + "/v1/chat/completions", content=b"{", headers={
        "Authorization": f"Bearer {A}", "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_langchains_chat_model_talks_to_it(server, red_circle):
    """The docs' LangChain snippet, as written there."""
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    _, base = server
    scene, _ = red_circle
    chat = ChatOpenAI(base_url=base + "/v1", api_key=A, model="switchboard", max_retries=0)
    image = {"type": "image_url", "image_url": {"url": _data_url(scene.image)}}
    ask = {"type": "text", "text": "how many shapes are there?"}
    reply = chat.invoke([HumanMessage(content=[ask, image])])
    assert _counts(reply.content, len(scene.objects))


def _counts(text: str, n: int) -> bool:
    """Whether ``text`` says the number ``n`` (as digits or as a word)."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    said = re.findall(r"\w+", text.lower())
    return str(n) in said or (n < len(words) and words[n] in said)


def _owner(token: str) -> str:
    from switchboard.ui.auth import owner_id

    return owner_id(token)
