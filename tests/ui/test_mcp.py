"""``switchboard mcp`` driven by the ``mcp`` SDK's client over stdio, as an MCP host runs it: a
subprocess of the real command, the default registry with the example plugin installed, the
real specialists and the trained router on ShapeWorld scenes."""

from __future__ import annotations

import base64
import os
import sys

import numpy as np
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from switchboard.core.media import decode_image, encode_png
from switchboard.world.scene import generate_scene

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def red_circle():
    """The first scene from seed 100 on with one red circle and at most four objects."""
    for seed in range(100, 400):
        scene = generate_scene(seed)
        found = [i for i, o in enumerate(scene.objects) if (o.color, o.shape) == ("red", "circle")]
        if len(found) == 1 and len(scene.objects) <= 4:
            return scene, found[0]
    raise AssertionError("no scene with one red circle")


@pytest.fixture(scope="module")
async def client(tmp_path_factory, installed_plugin):
    env = {
        "PYTHONSAFEPATH": "1",
        "PYTHONPATH": str(installed_plugin),  # the plugin's entry point, as a user install
        "SWITCHBOARD_HOME": str(tmp_path_factory.mktemp("mcp")),
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", "1"),
    }
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "switchboard.cli", "mcp"], env=env
    )
    async with Client(server, read_timeout_seconds=300) as c:
        yield c


def _b64(image: np.ndarray) -> str:
    return base64.b64encode(encode_png(image)).decode()


def _images(result) -> list[np.ndarray]:
    return [
        decode_image(base64.b64decode(c.data), convert=True)
        for c in result.content
        if c.type == "image"
    ]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


async def test_every_specialist_is_a_tool_with_its_schema(client, installed_plugin):
    from switchboard.agent.tools import AGENT_TOOLS
    from switchboard.core import Registry
    from switchboard.specialists import BUILTINS
    from switchboard.ui.mcp import tool_schema

    listed = {t.name: t for t in (await client.list_tools()).tools}
    registry = Registry(BUILTINS)  # what the server's process finds: built-ins + entry points
    registry.load_entry_points()
    assert "blur" in registry.names()  # the example plugin, found by its entry point
    specialists = [n for n in registry.names() if n not in AGENT_TOOLS]  # not undo/redo
    assert set(listed) == {*specialists, "chat"}
    for spec in registry.specs(specialists):
        assert listed[spec.name].input_schema == tool_schema(spec)
        assert spec.description in listed[spec.name].description
    segment = listed["segment"].input_schema
    assert "image" in segment["required"] and "target" in segment["properties"]
    assert "video" in listed["track"].input_schema["required"]
    assert listed["chat"].input_schema["required"] == ["text"]


async def test_segment_and_edit_return_the_mask_and_the_edited_image(client, red_circle):
    scene, k = red_circle
    truth = scene.masks[k].astype(bool)
    ask = {"image": _b64(scene.image), "target": "the red circle"}
    got = await client.call_tool("segment", ask)
    assert not got.is_error, got.content
    (mask,) = _images(got)
    assert _iou(mask[..., 0] > 0, truth) > 0.8
    assert got.content[0].type == "text" and "mask" in got.content[0].text
    assert got.structured_content["kind"] == "masks" and len(got.structured_content["scores"]) == 1
    got = await client.call_tool("edit", {**ask, "op": "recolor", "color": "blue"})
    assert not got.is_error, got.content
    (edited,) = _images(got)
    assert edited.shape == scene.image.shape
    inside = edited[truth].astype(int).mean(axis=0)  # the circle is blue now
    assert inside[2] > inside[0] + 60, inside
    near = truth.copy()  # the circle grown by 6 px: the edit's seam may touch it
    for _ in range(6):
        near = near | np.roll(near, 1, 0) | np.roll(near, -1, 0)
        near = near | np.roll(near, 1, 1) | np.roll(near, -1, 1)
    far = ~near
    diff = np.abs(edited.astype(int) - scene.image.astype(int))[far]
    assert diff.mean() < 3.0, diff.mean()
    assert got.structured_content["kind"] == "image" and got.structured_content["changed_px"] > 0


async def test_the_chat_tool_runs_a_turn_and_follows_up_in_its_session(client, red_circle):
    scene, k = red_circle
    ask = {"text": "segment the red circle", "image": _b64(scene.image)}
    got = await client.call_tool("chat", ask)
    assert not got.is_error, got.content
    turn = got.structured_content
    assert [c["tool"] for c in turn["calls"]] == ["segment"] and turn["outcome"] == "ok"
    assert got.content[0].text == turn["text"]
    (mask,) = _images(got)
    assert _iou(mask[..., 0] > 0, scene.masks[k].astype(bool)) > 0.8
    again = await client.call_tool(
        "chat", {"text": "how many shapes are there?", "session": turn["session"]}
    )
    assert not again.is_error and again.structured_content["session"] == turn["session"]
    words = again.content[0].text.lower().replace(".", " ").split()
    n = len(scene.objects)
    assert str(n) in words or ["zero", "one", "two", "three", "four"][n] in words


@pytest.mark.parametrize(
    "name, args, said",
    [
        ("paint", {"image": "x"}, "no tool 'paint'"),
        ("segment", {"target": "the circle"}, "takes image"),
        ("segment", {"image": "not base64!", "target": "x"}, "not valid base64"),
        ("segment", {"image": base64.b64encode(b"no image").decode(), "target": "x"}, "image"),
        ("segment", {"image": "IMAGE", "box": [1, 2, 3]}, "invalid arguments for segment"),
        ("edit", {"image": "IMAGE", "op": "explode"}, "invalid arguments for edit"),
        ("chat", {"text": "hi", "session": "nope"}, "no session"),
        ("chat", {"text": "hi", "colour": "red"}, "chat takes no colour"),
        ("chat", {}, "needs some text"),
    ],
)
async def test_a_malformed_call_is_an_error_result_and_the_server_goes_on(
    client, red_circle, name, args, said
):
    scene, _ = red_circle
    args = {k: (_b64(scene.image) if v == "IMAGE" else v) for k, v in args.items()}
    got = await client.call_tool(name, args)
    assert got.is_error and said.lower() in got.content[0].text.lower(), got.content
    assert len((await client.list_tools()).tools) >= 5  # still serving


async def test_over_streamable_http_the_token_is_required_and_the_tools_answer(
    tmp_path, serving, red_circle
):
    """``switchboard mcp --http``'s app: 401 without the token; with it, the same tools."""
    import httpx
    from mcp.client.streamable_http import streamable_http_client
    from switchboard.agent.sdk import Agent
    from switchboard.ui.mcp import http_app

    scene, _ = red_circle
    agent = Agent.load(home=tmp_path)

    async def detect(url: str) -> object:
        http = httpx.AsyncClient(headers={"Authorization": "Bearer tok"}, timeout=120)
        async with Client(streamable_http_client(url, http_client=http)) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            return names, await c.call_tool("detect", {"image": _b64(scene.image)})

    with serving(http_app(agent, ["tok"])) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        assert httpx.post(url, json={}).status_code == 401
        names, got = await detect(url)
    agent.close()
    from switchboard.agent.tools import AGENT_TOOLS

    assert names == [n for n in agent.registry.names() if n not in AGENT_TOOLS] + ["chat"]
    assert {"detect", "edit", "segment", "track"} <= set(names)
    assert not got.is_error and len(got.structured_content["xyxy"]) >= len(scene.objects) - 1
