"""The SDK over HTTP: :class:`Client` has :class:`~switchboard.agent.sdk.Agent`'s interface and
talks to ``switchboard serve`` (:mod:`switchboard.ui.server`).

    from switchboard.agent import Client

    client = Client("http://127.0.0.1:8000", token="…")   # token: SWITCHBOARD_API_TOKEN's
    turn = client.chat("segment the red circle", image="scene.png", region=(10, 10, 90, 90))
    turn.masks, turn.save("out/")
    for event in client.stream("detect the stars", image="scene.png"): ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from switchboard.core.errors import InvalidInputError, SwitchboardError
from switchboard.core.media import VIDEO_MEDIA_TYPES, decode_image, encode_png, load_image
from switchboard.core.results import Track
from switchboard.core.wire import TurnReply

from .sdk import CallRecord, Turn, _decode_input


class ServerError(SwitchboardError):
    """The server refused or failed a request (``status`` is the HTTP status)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 300.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def _check(self, r: Any) -> Any:
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            if r.status_code == 422:
                raise InvalidInputError(str(detail))
            raise ServerError(r.status_code, str(detail))
        return r

    # -- the Agent interface -----------------------------------------------------------------
    def chat(
        self,
        text: str,
        image: Any = None,
        video: Any = None,
        region: Any = None,
        session: str | None = None,
    ) -> Turn:
        url, form, files = self._request(text, image, video, region, session)
        return self._turn(self._check(self.http.post(url, data=form, files=files)).json())

    def stream(
        self,
        text: str,
        image: Any = None,
        video: Any = None,
        region: Any = None,
        session: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The server's events (``route``, ``call_started``, ``call_finished``, ``text``), then
        ``{"type": "turn", "turn": Turn}``."""
        url, form, files = self._request(text, image, video, region, session)
        with self.http.stream("POST", url + "/stream", data=form, files=files) as r:
            if r.status_code >= 400:
                r.read()
                self._check(r)
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "turn":
                    event["turn"] = self._turn(event["turn"])
                elif event["type"] == "error":
                    raise InvalidInputError(event["detail"])
                yield event

    def sessions(self) -> list[dict[str, Any]]:
        return self._check(self.http.get("/api/sessions")).json()

    def history(self, session: str) -> list[dict[str, Any]]:
        return self._check(self.http.get(f"/api/sessions/{session}")).json()["turns"]

    def current(self, session: str) -> dict[str, Any] | None:
        """The session's current image or video (what a request without media works on)."""
        return self._check(self.http.get(f"/api/sessions/{session}")).json()["current"]

    def undo(self, session: str) -> dict[str, Any]:
        """The version before the current one made current; :class:`ServerError` (409) when
        there is nothing to undo."""
        return self._check(self.http.post(f"/api/sessions/{session}/undo")).json()["current"]

    def redo(self, session: str) -> dict[str, Any]:
        return self._check(self.http.post(f"/api/sessions/{session}/redo")).json()["current"]

    def artifact(self, sha256: str) -> bytes:
        return self._check(self.http.get(f"/api/artifacts/{sha256}")).content

    def close(self) -> None:
        self.http.close()

    # -- helpers -----------------------------------------------------------------------------
    def _request(
        self, text: str, image: Any, video: Any, region: Any, session: str | None
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        if image is not None and video is not None:
            raise InvalidInputError("send an image or a video, not both")
        if session is None:
            session = self._check(self.http.post("/api/sessions")).json()["id"]
        form = {"text": text}
        if region is not None:
            if isinstance(region, np.ndarray):
                raise InvalidInputError("the HTTP API takes a box or a point region, not a mask")
            form["region"] = json.dumps(list(region) if isinstance(region, tuple) else region)
        files: dict[str, Any] = {}
        if image is not None:
            files["file"] = ("image.png", encode_png(load_image(image)), "image/png")
        elif video is not None:
            path = Path(video)
            kind = {v: k for k, v in VIDEO_MEDIA_TYPES.items()}.get(path.suffix.lower())
            if kind is None:
                raise InvalidInputError(f"unsupported video type {path.suffix!r}")
            files["file"] = (path.name, path.read_bytes(), kind)
        return f"/api/sessions/{session}/messages", form, files

    def _turn(self, d: dict[str, Any]) -> Turn:
        """A :class:`~switchboard.core.wire.TurnReply` as the SDK's Turn, masks and images
        fetched."""
        reply = TurnReply.model_validate(d)
        turn = Turn(reply.session, reply.turn, reply.text)
        turn.calls = [CallRecord(**c.model_dump()) for c in reply.calls]
        turn.boxes = [(tuple(b.xyxy), b.label, b.score) for b in reply.boxes]
        turn.tracks = [Track(**t.model_dump()) for t in reply.tracks]
        for a in reply.messages[-1].artifacts if reply.messages else []:
            if a.kind not in ("mask", "edited", "generated"):
                continue  # the results JSON: its boxes and tracks are in the reply already
            if a.media_type.startswith("video/"):  # an edited video (mp4)
                turn.videos.append(_decode_input("video", self.artifact(a.sha256)))
                continue
            data = decode_image(self.artifact(a.sha256), convert=True)
            if a.kind == "mask":
                turn.masks.append(data[..., 0] > 127)
            else:
                turn.images.append(data)
        return turn
