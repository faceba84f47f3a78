"""The contract every registered specialist keeps: built-ins and the example plugin alike.

The example plugin (``docs/examples/switchboard-blur``) is pip-installed for real and found
through its entry point, so this also proves the plugin path end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import BaseModel
from switchboard.core import (
    Image,
    InvalidInputError,
    Registry,
    Specialist,
    SpecialistFailedError,
    ToolSpec,
    Video,
)
from switchboard.core.registry import PluginLoadError
from switchboard.specialists import BUILTINS
from switchboard.world.language import best_name

EXAMPLE_PLUGINS = ["blur"]
NAMES = sorted(BUILTINS) + EXAMPLE_PLUGINS


@pytest.fixture(scope="module")
def registry(installed_plugin) -> Registry:
    reg = Registry(BUILTINS)
    added = reg.load_entry_points()
    assert set(EXAMPLE_PLUGINS) <= set(added)
    return reg


def _values(scene) -> dict:
    obj = next(o for o in scene.objects if best_name(scene, o.id))
    i = scene.index(obj.id)
    box = [int(v) for v in scene.boxes[i]]
    return {
        "ref": best_name(scene, obj.id),
        "box": box,
        "color": obj.color,
        "shape": obj.shape,
        "place": "center",
    }


def _media(cls: type[Specialist], scene):
    if "image" in cls.media:
        return Image(pixels=scene.image)
    if "video" in cls.media:
        return Video(frames=np.stack([scene.image] * 3), fps=5)
    return None


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_complete_and_examples_validate(registry, scene, name):
    cls = registry.cls(name)
    spec = cls.spec()
    assert isinstance(spec, ToolSpec) and spec.name == name
    assert spec.description and spec.tasks
    assert spec.args_schema.get("type") == "object"
    assert cls.examples, "a tool needs example requests so the router can learn it"
    for ex in cls.examples:
        _, args = ex.fill(_values(scene))
        assert isinstance(cls.parse_args(args), BaseModel)


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_shapeworld_and_result_serializes(registry, scene, name):
    from pydantic import TypeAdapter
    from switchboard.core import Result

    tool = registry.get(name)
    cls = registry.cls(name)
    _, args = cls.examples[0].fill(_values(scene))
    result = tool(_media(cls, scene), args)
    assert tool.loaded
    back = TypeAdapter(Result).validate_json(result.model_dump_json())
    assert back.kind == result.kind
    assert isinstance(result.observation(), str) and result.observation()
    tool.unload()
    assert not tool.loaded


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_typed_errors(registry, scene, name):
    tool = registry.get(name)
    cls = registry.cls(name)
    with pytest.raises(InvalidInputError):
        tool(
            _media(cls, scene),
            {"no_such_argument_type": object()} | {k: object() for k in cls.Args.model_fields},
        )
    wrong = None if cls.media != ("none",) else Image(pixels=scene.image)
    if "none" not in cls.media and wrong is None:
        with pytest.raises(InvalidInputError):
            tool(None, cls.examples[0].fill(_values(scene))[1])
    if cls.signal is None:
        with pytest.raises(InvalidInputError, match="no signal"):
            tool(
                _media(cls, scene), cls.examples[0].fill(_values(scene))[1], signal=np.zeros((1, 4))
            )


@pytest.mark.parametrize("name", NAMES)
def test_a_crash_inside_becomes_specialist_failed(registry, scene, name, monkeypatch):
    tool = registry.get(name)
    cls = registry.cls(name)

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(tool, "run", boom)
    with pytest.raises(SpecialistFailedError, match="kaboom"):
        tool(_media(cls, scene), cls.examples[0].fill(_values(scene))[1])


def test_registry_refuses_unknown_and_duplicates(registry):
    from switchboard.core import UnknownToolError

    with pytest.raises(UnknownToolError, match="registered"):
        registry.cls("no_such_tool")
    cls = registry.cls("blur")
    with pytest.raises(PluginLoadError, match="already registered"):
        registry.register(type("Other", (cls,), {}))
    with pytest.raises(PluginLoadError):
        registry.register(int)  # type: ignore[arg-type]


def test_runtime_register_and_default_registry_sees_plugin(installed_plugin):
    import switchboard.specialists as sp
    from switchboard.core import Text

    class EchoArgs(BaseModel):
        text: str

    class Echo(Specialist):
        name = "echo"
        description = "Repeat the text."
        tasks = ("echo",)
        Args = EchoArgs
        media = ("none",)

        def run(self, media, args, signal=None):
            return Text(text=args.text)

    sp._registry = None  # a fresh process-wide registry, as on start-up
    try:
        sp.register(Echo)
        reg = sp.default_registry()
        assert "blur" in reg and "echo" in reg
        assert reg.get("echo")(None, {"text": "hi"}).text == "hi"
    finally:
        sp._registry = None


def test_blur_plugin_blurs_the_named_object_and_nothing_else(registry, scene):
    """The example plugin does real work: the object the segment tool finds for the words loses
    its edges, every pixel outside the blurred box is untouched."""
    obj = next(o for o in scene.objects if best_name(scene, o.id))
    name = best_name(scene, obj.id)
    found = registry.get("segment")(Image(pixels=scene.image), {"target": name}).masks[0]
    out = registry.get("blur")(Image(pixels=scene.image), {"target": name})
    img, before = out.image.astype(float), scene.image.astype(float)
    assert (out.image[~out.edit_mask] == scene.image[~out.edit_mask]).all()
    assert out.edit_mask[found].all()  # all of what was found is blurred

    def edges(a):  # mean gradient magnitude over the blurred box (the outline and texture)
        gy, gx = np.gradient(a.mean(-1))
        return np.hypot(gx, gy)[out.edit_mask].mean()

    assert edges(img) < 0.6 * edges(before)
    light = registry.get("blur")(Image(pixels=scene.image), {"target": name, "strength": "light"})
    assert edges(img) < edges(light.image.astype(float)) < edges(before)
    whole = registry.get("blur")(Image(pixels=scene.image), {})
    assert whole.edit_mask.all() and not (whole.image == scene.image).all()


def test_calls_made_together_each_get_their_own_answer_or_error(registry, scene):
    """``call_many`` (a deployment's batch): a bad call fails alone with the error a lone
    call raises, a crash is a SpecialistFailedError for its call only, the others answer."""
    from switchboard.core import mask_to_box

    tool = registry.get("segment")
    box = [float(v) for v in mask_to_box(scene.masks[0])]
    image = Image(pixels=scene.image)
    out = tool.call_many([(image, {"box": box}, None), (image, {"box": [9, 9, 1, 1]}, None),
                          (None, {"box": box}, None)])  # fmt: skip
    assert np.array_equal(out[0].masks[0], tool(image, {"box": box}).masks[0])
    assert isinstance(out[1], InvalidInputError) and isinstance(out[2], InvalidInputError)
    real = tool.run
    seen = []

    def crash_on_second(media, args, signal=None):
        seen.append(args)
        if len(seen) == 2:
            raise RuntimeError("kaboom")
        return real(media, args, signal)

    tool.run = crash_on_second
    try:
        out = tool.call_many([(image, {"box": box}, None)] * 3)
    finally:
        del tool.run
    assert isinstance(out[1], SpecialistFailedError) and "kaboom" in str(out[1])
    assert out[0].masks and out[2].masks
