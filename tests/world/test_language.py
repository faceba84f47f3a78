import numpy as np
from switchboard.world import caption, generate_scene, questions, referring_expressions, relations
from switchboard.world.language import relation_holds
from switchboard.world.scene import Background, ShapeObject, render

BG = Background("plain", 0, (128, 128, 128))


def _scene(*objs):
    return render(list(objs), BG, 256)


def test_relational_and_ordinal_expressions_on_a_hand_made_scene():
    sc = _scene(
        ShapeObject(0, "circle", "red", "small", 40, 128, 15),
        ShapeObject(1, "circle", "red", "small", 128, 128, 15),
        ShapeObject(2, "star", "blue", "medium", 200, 128, 25),
        ShapeObject(3, "circle", "red", "small", 128, 40, 15),
    )
    texts = {(r.text, r.target, r.kind) for r in referring_expressions(sc)}
    assert ("star", 2, "attribute") in texts
    assert ("first circle from the left", 0, "ordinal") in texts
    assert ("circle left of the star", 0, "relational") not in texts  # two circles are left of it
    assert ("first circle from the top", 3, "ordinal") in texts
    assert ("circle above the star", 3, "relational") in texts
    # No expression is produced for an ambiguous ordering (circles 1 and 3 share x).
    assert not any(
        r.text.endswith("from the right") and r.target == 1 for r in referring_expressions(sc)
    )


def test_every_expression_is_unambiguous_by_construction():
    for seed in range(30):
        sc = generate_scene(seed)
        for r in referring_expressions(sc):
            if r.kind == "attribute":
                words = r.text.replace(" shape", "").split()
                hits = [
                    o.id for o in sc.objects if all(w in (o.size, o.color, o.shape) for w in words)
                ]
                assert hits == [r.target], r


def test_relations_are_consistent():
    sc = _scene(
        ShapeObject(0, "square", "green", "small", 50, 50, 15),
        ShapeObject(1, "heart", "pink", "small", 200, 200, 15),
    )
    rel = set(relations(sc))
    assert {(0, "left of", 1), (0, "above", 1), (1, "right of", 0), (1, "below", 0)} <= rel
    assert relation_holds(sc, 0, "left of", 1) and not relation_holds(sc, 1, "left of", 0)


def test_caption_and_questions_follow_ground_truth():
    sc = _scene(
        ShapeObject(0, "cross", "red", "small", 50, 50, 15),
        ShapeObject(1, "cross", "red", "small", 150, 50, 15),
        ShapeObject(2, "star", "yellow", "large", 128, 180, 40),
    )
    assert caption(sc) == "two small red crosses and a large yellow star on a plain background"
    qs = {q.text: q.answer for q in questions(sc, np.random.default_rng(0))}
    assert qs["how many shapes are there?"] == "three"
    assert qs["what color is the star?"] == "yellow"
    assert qs["what shape is the yellow object?"] == "star"
