"""Shared by the HTTP tests: an app served for real (uvicorn on a loopback port, in a thread)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest


@contextmanager
def _serving(app):
    """``app`` under uvicorn on a free loopback port, in a thread; yields the port."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def serving():
    """``with serving(app) as port:`` — the app on a real socket for the block."""
    return _serving
