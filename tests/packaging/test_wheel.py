"""A regular (non-editable) install works: the wheel built from this tree, installed into a
fresh virtual environment, finds its own weights and answers a turn from outside the source tree.

Run by CI after ``make test`` (``make test-wheel``; ~1–2 min: the wheel carries the ~60 MB of
trained weights). The fresh environment borrows the project's installed dependencies (torch and
the rest) through a ``.pth`` line instead of downloading them again; switchboard itself comes
only from the wheel — the source tree's editable install is not visible to it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest
from switchboard.core.media import encode_png
from switchboard.world.scene import generate_scene
from switchboard.world.splits import SPLITS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel of this tree installed; returns its python."""
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("switchboard-*.whl")
    env = tmp / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", where], text=True).strip())
    # The project's dependencies, borrowed (a path line: the .pth files there, such as the
    # editable finder of this tree, are not run).
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return python


def test_the_wheel_carries_the_weights_and_answers_a_turn(installed, tmp_path):
    image = tmp_path / "scene.png"
    scene = generate_scene(SPLITS["test"][0] + 3)  # a held-out scene
    image.write_bytes(encode_png(scene.image))
    names = [f"{o.color} {o.shape}" for o in scene.objects]
    k = next(i for i, n in enumerate(names) if names.count(n) == 1)
    probe = (
        "import json, switchboard.agent, switchboard.core.config as c; "
        "print(json.dumps({'package': switchboard.agent.__file__, 'models': str(c.models_dir())}))"
    )
    where = subprocess.run(
        [str(installed), "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert where.returncode == 0, where.stderr[-2000:]
    found = json.loads(where.stdout.strip().splitlines()[-1])
    venv_root = installed.parents[1]
    assert Path(found["package"]).is_relative_to(venv_root), found  # not the source tree
    models = Path(found["models"])
    assert models.is_relative_to(venv_root), found
    for name in ("router-tiny", "segment-tiny", "detect-tiny", "edit-tiny"):
        assert (models / name).is_dir(), name
    # One turn through the installed CLI, from a folder outside the source tree.
    ask = f"segment the {names[k]}"
    out = tmp_path / "out"
    run = subprocess.run(
        [
            str(installed),
            "-m",
            "switchboard.cli",
            "run",
            ask,
            "--image",
            str(image),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env={
            "SWITCHBOARD_HOME": str(tmp_path / "home"),
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
        },
    )
    assert run.returncode == 0, run.stderr[-3000:]
    calls = json.loads((out / "calls.json").read_text())
    assert [c["tool"] for c in calls] == ["segment"] and calls[0]["status"] == "ok"
    from PIL import Image

    mask = np.asarray(Image.open(out / "mask_0.png")) > 127
    truth = scene.masks[k]
    iou = (mask & truth).sum() / max(1, (mask | truth).sum())
    assert iou > 0.7, iou
