"""``switchboard bench --only hardening``: ``switchboard serve`` in its own process, probed as a
hostile or careless client would (the hardening issue's findings), its memory read from outside:

- **bad media**: a 22 KB mp4 of 400 black 1280×720 frames, an mp4 of two 8000×6000 frames, a
  PNG claiming 30000×30000 pixels — each refused (422), the server's peak RSS above idle;
- **an unauthenticated 1.5 GB POST**: how soon the 401 comes and how much was sent by then;
- **restart**: three turns pending (one running, two waiting), ``kill -9``, a new server on the
  same home — seconds until ``/api/health`` answers, and the three turns' final statuses;
- **abandoned streams**: 16 clients at once, 8 of which close their stream at once
  (``SWITCHBOARD_ON_DISCONNECT=cancel``): the others' errors, the abandoned turns' statuses;
- **RSS over sequential turns**: after 20 and after ``n["sequential"]`` segment turns.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ServeProcess:
    """``switchboard serve`` on a free loopback port in a child process, on ``home``."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "SWITCHBOARD_API_TOKEN": TOKEN, "SWITCHBOARD_HOME": str(home),
               "SWITCHBOARD_RATE_PER_MINUTE": "100000", **(env or {})}  # fmt: skip
        cmd = [sys.executable, "-m", "switchboard.cli", "serve", "--port", str(self.port)]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def wait_healthy(self, timeout: float = 120.0) -> float:
        """Seconds from the process's start until ``/api/health`` answers 200."""
        import httpx

        while time.perf_counter() - self.t0 < timeout:
            try:
                if httpx.get(self.url + "/api/health", timeout=1.0).status_code == 200:
                    return time.perf_counter() - self.t0
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("switchboard serve exited")
            time.sleep(0.05)
        raise TimeoutError("switchboard serve did not become healthy")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class PeakRss:
    """The highest RSS of ``server`` sampled every 10 ms while the block runs."""

    def __init__(self, server: ServeProcess) -> None:
        self.server, self.peak, self._stop = server, 0.0, threading.Event()

    def __enter__(self) -> PeakRss:
        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, self.server.rss_mb())
                time.sleep(0.01)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


def _bad_media(folder: Path) -> dict[str, tuple[str, bytes, str]]:
    """The probes' files: name → (file name, bytes, media type)."""
    import imageio.v3 as iio
    from PIL import Image

    black = folder / "black.mp4"
    iio.imwrite(black, np.zeros((400, 720, 1280, 3), np.uint8), fps=25, codec="libx264")
    huge = folder / "huge.mp4"
    iio.imwrite(huge, np.zeros((2, 6000, 8000, 3), np.uint8), fps=1, codec="libx264")
    claim = folder / "claim.png"  # a header that claims 30000x30000 (a decompression bomb)
    Image.new("1", (30000, 30000)).save(claim, optimize=True)
    return {
        "400 black 720p frames": ("black.mp4", black.read_bytes(), "video/mp4"),
        "two 8000x6000 frames": ("huge.mp4", huge.read_bytes(), "video/mp4"),
        "30000x30000 PNG": ("claim.png", claim.read_bytes(), "image/png"),
    }


def _session(url: str) -> str:
    import httpx

    return httpx.post(url + "/api/sessions", headers=AUTH).json()["id"]


def _segment_request(k: int) -> tuple[str, bytes]:
    from switchboard.core.media import encode_png
    from switchboard.world.scene import generate_scene

    scene = generate_scene(1_009_000 + k)
    o = scene.objects[0]
    return f"segment the {o.color} {o.shape}", encode_png(scene.image)


def _post(url: str, sid: str, k: int, timeout: float = 300.0) -> Any:
    import httpx

    text, png = _segment_request(k)
    return httpx.post(
        f"{url}/api/sessions/{sid}/messages",
        headers=AUTH,
        timeout=timeout,
        data={"text": text},
        files={"file": ("s.png", png, "image/png")},
    )


def _probe_media(server: ServeProcess, folder: Path) -> dict[str, Any]:
    import httpx

    files = _bad_media(folder)
    sid = _session(server.url)
    _post(server.url, sid, 0)  # the specialists loaded: idle is a warm server's
    time.sleep(1.0)
    idle = server.rss_mb()
    rows = {}
    for what, (name, data, kind) in files.items():
        with PeakRss(server) as peak:
            r = httpx.post(
                f"{server.url}/api/sessions/{sid}/messages",
                headers=AUTH,
                data={"text": "what is this?"},
                files={"file": (name, data, kind)},
                timeout=120,
            )
        rows[what] = {"bytes": len(data), "status": r.status_code,
                      "peak_above_idle_mb": round(peak.peak - idle, 1),
                      "detail": r.json().get("detail", "")[:160]}  # fmt: skip
    return {
        "idle_rss_mb": round(idle, 1),
        "probes": rows,
        "worst_peak_above_idle_mb": max(r["peak_above_idle_mb"] for r in rows.values()),
    }


def _probe_unauthenticated(server: ServeProcess, size: int = 1_500_000_000) -> dict[str, Any]:
    """A raw socket sends headers claiming ``size`` bytes, then the body in 64 KB chunks until
    an answer arrives or the server closes the connection."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    head = (
        f"POST /api/sessions/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {size}\r\n\r\n"
    )
    chunk, sent, answer = b"x" * 65536, 0, b""
    t0 = time.perf_counter()
    sock.sendall(head.encode())
    while time.perf_counter() - t0 < 30 and sent < size:
        try:
            answer += sock.recv(4096)
            if answer:
                break
        except BlockingIOError:
            pass
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            break
    seconds = time.perf_counter() - t0
    sock.close()
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
    return {
        "claimed_bytes": size,
        "status": status,
        "answered_s": round(seconds, 3),
        "sent_before_answer_mb": round(sent / 2**20, 2),
    }


def _probe_restart(home: Path) -> dict[str, Any]:
    """Three turns pending, the server killed, a new one on the same home."""
    import httpx

    server = ServeProcess(home)
    server.wait_healthy()
    sid = _session(server.url)
    threads = [
        threading.Thread(
            target=lambda k=k: _swallow(lambda: _post(server.url, sid, k)), daemon=True
        )
        for k in range(3)
    ]
    for t in threads:
        t.start()
        time.sleep(0.3)
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:  # all three stored, one of them running
        turns = httpx.get(f"{server.url}/api/sessions/{sid}", headers=AUTH).json()["turns"]
        if len(turns) == 3 and all(t["status"] == "pending" for t in turns[1:]):
            break
        time.sleep(0.05)
    pending = sum(t["status"] == "pending" for t in turns)
    server.kill()
    again = ServeProcess(home)
    healthy_s = again.wait_healthy()
    deadline = time.perf_counter() + 300
    while time.perf_counter() < deadline:
        turns = httpx.get(f"{again.url}/api/sessions/{sid}", headers=AUTH).json()["turns"]
        if all(t["status"] != "pending" for t in turns):
            break
        time.sleep(0.2)
    again.stop()
    return {
        "pending_at_kill": pending,
        "restart_to_health_s": round(healthy_s, 2),
        "statuses_after": [t["status"] for t in turns],
        "resumed": sum(bool(t.get("resumed")) for t in turns),
    }


def _swallow(fn: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):  # a request cut off by the kill: expected
        fn()


def _probe_abandoned(home: Path, clients: int = 16) -> dict[str, Any]:
    import httpx

    server = ServeProcess(
        home,
        {"SWITCHBOARD_ON_DISCONNECT": "cancel", "SWITCHBOARD_MAX_QUEUED_TURNS": str(2 * clients)},
    )
    server.wait_healthy()
    errors: list[str] = []
    abandoned: list[str] = []

    def stay(k: int) -> None:
        sid = _session(server.url)
        r = _post(server.url, sid, 100 + k)
        if r.status_code != 200:
            errors.append(f"{r.status_code}: {r.text[:100]}")

    def leave(k: int) -> None:
        sid = _session(server.url)
        abandoned.append(sid)
        text, png = _segment_request(200 + k)
        upload = {"file": ("s.png", png, "image/png")}
        with httpx.stream(
            "POST",
            f"{server.url}/api/sessions/{sid}/messages/stream",
            headers=AUTH,
            data={"text": text},
            files=upload,
            timeout=60,
        ) as r:
            if r.status_code != 200:
                errors.append(f"stream {r.status_code}")

    t0 = time.perf_counter()
    threads = [
        threading.Thread(target=(leave if k % 2 else stay), args=(k,)) for k in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.perf_counter() + 300
    statuses: list[str] = []
    while time.perf_counter() < deadline:
        statuses = [
            t["status"]
            for sid in abandoned
            for t in httpx.get(f"{server.url}/api/sessions/{sid}", headers=AUTH).json()["turns"]
        ]
        if "pending" not in statuses:
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    server.stop()
    return {
        "clients": clients,
        "abandoned": len(abandoned),
        "errors_of_the_others": len(errors),
        "error_examples": errors[:3],
        "abandoned_statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "wall_s": round(wall, 1),
    }


def _probe_sequential(home: Path, turns: int) -> dict[str, Any]:
    server = ServeProcess(home)
    server.wait_healthy()
    sid = _session(server.url)
    rss: dict[int, float] = {}
    for k in range(turns):
        if (
            _post(server.url, sid if k % 20 else (sid := _session(server.url)), k).status_code
            != 200
        ):
            raise RuntimeError(f"turn {k} failed")
        if k + 1 in (20, turns):
            rss[k + 1] = server.rss_mb()
    server.stop()
    first, last = rss[20], rss[turns]
    return {
        "turns": turns,
        "rss_after_20_mb": round(first, 1),
        f"rss_after_{turns}_mb": round(last, 1),
        "change_pct": round(100 * (last - first) / first, 1),
    }


def bench_hardening(n: dict[str, int], log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = ServeProcess(root / "home")
        out["start_to_health_s"] = round(server.wait_healthy(), 2)
        try:
            out["bad_media"] = _probe_media(server, root)
            log(f"bad media: peak {out['bad_media']['worst_peak_above_idle_mb']} MB above idle")
            out["unauthenticated_post"] = _probe_unauthenticated(server)
            log(f"1.5 GB without a token: {json.dumps(out['unauthenticated_post'])}")
        finally:
            server.stop()
        out["restart"] = _probe_restart(root / "restart")
        log(f"restart: {json.dumps(out['restart'])}")
        out["abandoned_streams"] = _probe_abandoned(root / "abandon", n["clients"] * 2)
        log(f"abandoned streams: {json.dumps(out['abandoned_streams'])}")
        out["sequential"] = _probe_sequential(root / "sequential", n["sequential"])
        log(f"sequential: {json.dumps(out['sequential'])}")
    return out
