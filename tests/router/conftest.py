"""One SmolLM2 for the router tests: dequantized from the GGUF file once per session into a
session-private home (so the cold path is exercised in every run), then read from that cache."""

from __future__ import annotations

import os
import time

import pytest
from switchboard.core import config


@pytest.fixture(scope="session")
def llm_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("switchboard-home")
    old = os.environ.get("SWITCHBOARD_HOME")
    os.environ["SWITCHBOARD_HOME"] = str(home)
    config.get_settings.cache_clear()
    yield home
    if old is None:
        os.environ.pop("SWITCHBOARD_HOME", None)
    else:
        os.environ["SWITCHBOARD_HOME"] = old
    config.get_settings.cache_clear()


@pytest.fixture(scope="session")
def smollm(llm_home):
    """(tokenizer, model, cold-load seconds) from the session home's cache."""
    from switchboard.router.llm import load_llm

    t0 = time.perf_counter()
    tok, model = load_llm()
    return tok, model, time.perf_counter() - t0


@pytest.fixture(scope="session")
def committed_router(smollm):
    """The committed router-tiny as ``Router.load`` gives it (fp16 decoding after an fp32
    prefill), loaded once for the modules that only route with it (a load merges the adapter
    and casts a copy: ~12 s on 2 cores). A test that needs a fresh router's state sets
    ``router._last = None`` (no KV prefix to reuse from an earlier route)."""
    from switchboard.router.inference import Router
    from switchboard.specialists import default_registry

    return Router.load(registry=default_registry())
