"""Teaching the router a plugin (``--add-tools``) with the example plugin, installed for real:
its examples split into trained and held-out phrasings, training items carry the real tool's
observation, and a short update on the real SmolLM2 writes a router that loads, routes and
records what it was taught."""

from __future__ import annotations

import json

import numpy as np
import pytest
from switchboard.core import InvalidInputError, Registry
from switchboard.router.data import DONE
from switchboard.router.plugins import (
    PLUGINS_FILE,
    evaluate_plugins,
    examples_of,
    new_tools,
    plugin_items,
    plugin_request,
    taught_tools,
)
from switchboard.specialists import BUILTINS


@pytest.fixture(scope="module")
def registry(installed_plugin) -> Registry:
    reg = Registry(BUILTINS)
    reg.load_entry_points()
    return reg


def test_held_out_phrasings_are_never_trained_on(registry):
    cls = registry.cls("blur")
    train, test = examples_of(cls, "train"), examples_of(cls, "test")
    assert len(train) == 12 and len(test) == 3
    assert not {e.request for e in train} & {e.request for e in test}
    # The items drawn for training only ever use train phrasings (wrapped or not).
    held = [e.request.split("{ref}")[0] for e in test]
    for seed in range(40):
        for item in plugin_items(cls, seed, registry)[:1]:
            said = item.messages[1]["content"]
            assert not any(h and h in said for h in held), said


def test_items_are_the_call_then_done_after_the_real_observation(registry):
    cls = registry.cls("blur")
    items = plugin_items(cls, 11, registry)
    assert len(items) == 2
    call = items[0].calls[0]
    assert call.tool == "blur" and items[0].target.startswith("<call>")
    cls.parse_args(call.args)
    if "target" in call.args:  # a referring expression of an object of the scene
        text, want, _ = plugin_request(cls, 11, "train", wrap=True)
        assert want.args["target"] in text
    assert items[1].messages[-1]["content"] == "[blur → new image]"
    assert items[1].target == DONE and not items[1].calls


def test_new_tools_are_the_plugins_the_router_lacks(registry, tmp_path):
    assert new_tools(registry, tmp_path) == ["blur"]
    (tmp_path / PLUGINS_FILE).write_text(json.dumps({"tools": ["blur"]}))
    assert taught_tools(tmp_path) == ["blur"] and new_tools(registry, tmp_path) == []
    assert new_tools(Registry(BUILTINS), tmp_path) == []


def test_add_tools_updates_a_router_that_loads_and_is_scored(smollm, registry, tmp_path):
    from switchboard.router.inference import Router
    from switchboard.router.plugins import add_tools
    from switchboard.router.train import PRESETS, build_router

    src = build_router(PRESETS["smoke"], None).save_pretrained(tmp_path / "src")
    with pytest.raises(InvalidInputError, match="no new tools"):
        add_tools(None, src, tmp_path / "x", steps=1, registry=Registry(BUILTINS), log=str)
    out = add_tools(
        ["blur"],
        src,
        tmp_path / "out",
        steps=2,
        batch=2,
        minutes=0,
        hard_share=0.5,
        registry=registry,
        log=str,
    )
    record = json.loads((out / PLUGINS_FILE).read_text())
    assert record["tools"] == ["blur"] and record["steps_done"] == 2
    # Removing reads most like blurring: it is rehearsed more, so the two stay apart.
    assert "remove" in record["hard_tasks"]
    assert record["examples"]["blur"]["held_out"] == [
        e.request for e in examples_of(registry.cls("blur"), "test")
    ]
    assert np.isfinite(record["final_loss_mean_10"])
    res = evaluate_plugins(Router.load(out, registry), ["blur"], n=2)["tools"]["blur"]
    assert res["requests"] == 2 and 0.0 <= res["exact"] <= res["tool"] <= 1.0
