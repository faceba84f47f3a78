"""Query parsing, referent resolution and colour naming, against ShapeWorld ground truth."""

from switchboard.specialists.colors import color_in_box
from switchboard.specialists.objects import SceneObject
from switchboard.specialists.queries import (
    contradicts,
    parse_query,
    referent_words,
    resolve_referent,
)
from switchboard.world import SHAPES, generate_scene, referring_expressions
from switchboard.world.splits import split_seeds


def test_parse_query():
    q = parse_query("the blue star", list(SHAPES))
    assert (q.shape, q.color, q.single) == ("star", "blue", True)
    q = parse_query("all red objects", list(SHAPES))
    assert (q.shape, q.color, q.single) == (None, "red", False)
    assert parse_query("crosses", list(SHAPES)).shape == "cross"
    assert parse_query("traffic lights", ["traffic light", "person"]).shape == "traffic light"


def test_colour_of_every_object_in_held_out_scenes():
    right = total = 0
    for seed in split_seeds("test", 40):
        scene = generate_scene(seed)
        for o, box, m in zip(scene.objects, scene.boxes, scene.masks, strict=True):
            total += 1
            right += color_in_box(scene.image, tuple(box), m) == o.color
    assert right == total


def test_resolver_picks_the_right_object_from_ground_truth_detections():
    """With perfect detections, every referring expression resolves to its target."""
    right = total = 0
    for seed in split_seeds("test", 40):
        scene = generate_scene(seed)
        dets = [
            SceneObject(k + 1, tuple(map(float, b)), o.shape, o.color, o.size, "center", 1.0)
            for k, (o, b) in enumerate(zip(scene.objects, scene.boxes, strict=True))
        ]
        for ref in referring_expressions(scene):
            hit = resolve_referent(ref.text, dets, list(SHAPES), scene.size)
            total += 1
            right += hit is not None and hit.xyxy == dets[scene.index(ref.target)].xyxy
    assert total > 100 and right / total >= 0.97, (right, total)
    assert resolve_referent("the purple dragon", [], list(SHAPES), 256) is None


def test_words_that_rule_an_object_out():
    star = SceneObject(1, (10, 10, 40, 40), "star", "blue", "small", "top left", 0.9)
    classes = ["star", "circle"]
    assert referent_words("the second star from the left") == "star"
    assert referent_words("the circle left of the star").strip() == "the circle"
    assert contradicts("the red star", star, classes)  # colour
    assert contradicts("the circle left of the star", star, classes)  # the referent's class
    assert not contradicts("the star left of the circle", star, classes)
    assert not contradicts("the small blue star", star, classes)
    assert not contradicts("the one on the left", star, classes)  # nothing to check
