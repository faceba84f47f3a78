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


@pytest.fixture
def dead_runner() -> str:
    """A turn runner that is a dead process of this host (Linux pids stay under 2**22): a
    store opened as it stands for a process that was killed."""
    import socket

    return f"{socket.gethostname()}:{2**22 + 7}:0"


def _postgres_bin(name: str) -> str:
    import glob
    import shutil

    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:  # `make test` installs it (apt: postgresql); a missing server is a failure
        pytest.fail(f"no PostgreSQL server here ({name} not found): run `make postgres`")
    return found


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):
    """A throwaway PostgreSQL server on loopback for the whole run (initdb + pg_ctl from the
    machine's PostgreSQL, as the ``postgres`` user when the tests run as root); yields its
    URL without a database name."""
    import shutil
    import socket

    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    prefix: list[str] = []
    root = tmp_path_factory.mktemp("pg")
    if os.geteuid() == 0:  # initdb refuses root
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        root.chmod(0o700)
        for parent in root.parents:  # postgres must be able to reach its data folder
            if str(parent).startswith(str(tmp_path_factory.getbasetemp().parent)):
                parent.chmod(parent.stat().st_mode | 0o711)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {root} -h 127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the run's PostgreSQL server for one test."""
    import re

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:50] + f"_{os.getpid()}"
    server = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"
