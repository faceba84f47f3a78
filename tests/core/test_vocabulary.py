"""The words replies and not-found messages use for counts of things."""

import pytest
from switchboard.core.vocabulary import article, count_words, plural_noun


@pytest.mark.parametrize(
    "noun,plural",
    [
        ("cross", "crosses"),
        ("person", "people"),
        ("bus", "buses"),
        ("pony", "ponies"),
        ("traffic light", "traffic lights"),
        ("green cross", "green crosses"),
        ("toy", "toys"),
    ],
)
def test_plurals(noun, plural):
    assert plural_noun(noun) == plural


def test_counts_and_articles():
    assert article("orange star") == "an orange star" and article("red bus") == "a red bus"
    assert count_words(0, "star") == "no stars"
    assert count_words(1, "orange hexagon") == "an orange hexagon"
    assert count_words(2, "person") == "2 people"
