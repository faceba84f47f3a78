"""The run time never imports the ShapeWorld generator: a real turn through the default agent
(router, object list, segment) and the server's app, in a fresh interpreter, leave
``switchboard.world`` unimported."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys, tempfile
from pathlib import Path
import cv2, numpy as np
from switchboard.agent import Agent
from switchboard.ui.server import create_app

image = np.full((256, 256, 3), 128, np.uint8)
cv2.circle(image, (80, 120), 30, (215, 38, 38), -1)
cv2.rectangle(image, (160, 60), (220, 120), (38, 78, 220), -1)
with tempfile.TemporaryDirectory() as home:
    agent = Agent.load(home=Path(home))
    create_app(agent)
    turn = agent.chat("segment the red circle", image=image)
    found = agent.chat("segment the bus", image=image)
world = sorted(m for m in sys.modules if m.startswith("switchboard.world"))
print(json.dumps({"world": world, "masks": len(turn.masks), "text": found.text,
                  "found_masks": len(found.masks)}))
"""


def test_a_real_turn_imports_no_world_module():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, check=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["world"] == []
    assert res["masks"] == 1
    # A class the detector does not have: said, and nothing produced for it.
    assert res["found_masks"] == 0 and "can't find" in res["text"], res
