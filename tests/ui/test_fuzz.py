"""The HTTP API fuzzed: requests generated from its own OpenAPI document (schemathesis) and
hypothesis strategies for the fields a client writes by hand (regions, uploads, form fields),
sent to the real app over a real Agent (store, graph, registry) with a scripted policy (what is
fuzzed is the server's handling of input, not the router). No response may be a 5xx, every JSON
body must parse as strict JSON, and the server must still answer afterwards.

``SWITCHBOARD_FUZZ_REQUESTS`` sets the size (600 in ``make test``; the hardening issue's run
used 5000); the count actually sent is printed at the end.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from switchboard.agent.graph import Step
from switchboard.agent.sdk import Agent
from switchboard.core import Registry
from switchboard.core.config import get_settings
from switchboard.core.media import encode_png
from switchboard.specialists import BUILTINS
from switchboard.ui.server import create_app

REQUESTS = int(os.environ.get("SWITCHBOARD_FUZZ_REQUESTS", "600"))
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SENT: dict[str, int] = {"schema": 0, "regions": 0, "uploads": 0}
STATUS: dict[int, int] = {}
FUZZ = settings(
    deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


class Words:
    """Answers every request in words (the fuzz is about the server, not the router)."""

    def step(self, messages, *a, **kw):
        return Step(text="Noted.")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    os.environ["SWITCHBOARD_RATE_PER_MINUTE"] = "1000000"  # the fuzz is one client
    get_settings.cache_clear()
    try:
        home = tmp_path_factory.mktemp("fuzz")
        agent = Agent.load(home=home, policy=Words(), registry=Registry(BUILTINS))
        yield create_app(agent, tokens=[TOKEN], max_upload_bytes=200_000)
    finally:
        os.environ.pop("SWITCHBOARD_RATE_PER_MINUTE", None)
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def session(client):
    return client.post("/api/sessions", headers=AUTH).json()["id"]


def _check(response, kind: str) -> None:
    SENT[kind] += 1
    STATUS[response.status_code] = STATUS.get(response.status_code, 0) + 1
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if "json" in response.headers.get("content-type", ""):
        json.loads(response.text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))


def _operations(app) -> list:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_generated_requests_get_no_server_error(app):
    """Every operation of the OpenAPI document, with generated paths, queries and bodies
    (schemathesis' strategies), sent with the token."""
    operations = _operations(app)
    assert len(operations) >= 10
    for op in operations:

        @given(case=op.as_strategy())
        @settings(FUZZ, max_examples=max(REQUESTS // 2 // len(operations), 5))
        def fuzz(case):
            case.headers = {**(case.headers or {}), **AUTH}
            _check(case.call(), "schema")

        fuzz()


REGION = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.text(max_size=8)
    | st.floats(allow_nan=True, allow_infinity=True),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(
            st.sampled_from(["box", "point", "mask", "counts", "size", "x"]), inner, max_size=3
        )
    ),
    max_leaves=12,
)


@given(region=REGION | st.text(max_size=40), text=st.text(max_size=60))
@settings(FUZZ, max_examples=REQUESTS // 4)
def test_hand_written_fields_get_a_sentence_not_a_crash(client, session, region, text):
    """Regions of any shape (boxes of strings, nested lists, RLE claiming huge sizes, NaN),
    with any text, on an image: 200 or a 4xx with a sentence."""
    image = encode_png(np.full((32, 32, 3), 90, np.uint8))
    raw = region if isinstance(region, str) else json.dumps(region)
    r = client.post(
        f"/api/sessions/{session}/messages",
        headers=AUTH,
        data={"text": text, "region": raw},
        files={"file": ("a.png", image, "image/png")},
    )
    _check(r, "regions")
    if r.status_code >= 400:
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]


@given(
    data=st.binary(max_size=3000),
    kind=st.sampled_from(
        ["image/png", "image/jpeg", "image/gif", "video/mp4", "video/webm", "text/plain", ""]
    ),
)
@settings(FUZZ, max_examples=REQUESTS // 4)
def test_any_bytes_as_an_upload_get_a_sentence_not_a_crash(client, session, data, kind):
    """Bytes of any kind under any media type (a PNG header followed by junk among them)."""
    body = b"\x89PNG\r\n\x1a\n" + data if data[:1] == b"\x00" else data
    r = client.post(
        f"/api/sessions/{session}/messages",
        headers=AUTH,
        data={"text": "what is this?"},
        files={"file": ("upload", body, kind or "application/x-binary")},
    )
    _check(r, "uploads")


def test_the_server_still_answers_and_the_count_is_printed(client):
    assert client.get("/api/health").json()["status"] == "ok"
    total = sum(SENT.values())
    print(
        f"\nfuzz: {total} requests ({SENT}), statuses {dict(sorted(STATUS.items()))}, "
        f"0 responses >= 500"
    )
    assert total >= REQUESTS * 0.6  # some operations have fewer distinct inputs than asked
