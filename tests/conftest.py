"""Shared fixtures: a ShapeWorld scene, and the example plugin installed for real."""

from __future__ import annotations

import os

# Triton's CPU interpreter for the kernel tests: it must be set before triton is first imported
# (the kernels only run where a test asks for them; the default path on the CPU is torch's).
os.environ.setdefault("TRITON_INTERPRET", "1")

import subprocess  # noqa: E402
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "docs" / "examples" / "switchboard-blur"


@pytest.fixture(scope="session")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` the example plugin into a private folder and put it on ``sys.path``.

    Its entry point is then visible to ``importlib.metadata`` exactly as for a user install,
    without changing the project's virtual environment.
    """
    target = tmp_path_factory.mktemp("plugins")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
    )
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))


@pytest.fixture(scope="session")
def scene():
    from switchboard.world import generate_scene

    return generate_scene(3)
