from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def registry():
    """The process-wide registry with the committed checkpoints, loaded once for all tests."""
    from switchboard.specialists import default_registry

    return default_registry()


@pytest.fixture(scope="session")
def segmenter(registry):
    return registry.get("segment").load()


@pytest.fixture(scope="session")
def detector(registry):
    return registry.get("detect").load()


@pytest.fixture(scope="session")
def tracker(registry, segmenter, detector):
    return registry.get("track").load()
