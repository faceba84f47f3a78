import numpy as np
import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from switchboard.core import (
    Boxes,
    ExampleRequest,
    HybridCall,
    ImageOut,
    InvalidInputError,
    Masks,
    Result,
    SignalSpec,
    Text,
    ToolSpec,
    Track,
    Tracks,
)


def test_signal_spec_checks_shapes():
    spec = SignalSpec(num_tokens=4, dim=256)
    assert spec.check(torch.zeros(4, 256)).shape == (4, 256)
    assert spec.check(torch.zeros(1, 4, 256)).shape == (4, 256)
    for bad in (torch.zeros(3, 256), torch.zeros(4, 128), torch.zeros(2, 4, 256)):
        with pytest.raises(InvalidInputError):
            spec.check(bad)
    with pytest.raises(ValidationError):
        SignalSpec(num_tokens=0, dim=256)


def test_hybrid_call_wire_excludes_signal():
    call = HybridCall(tool="segment", args={"target": "the red circle"}, signal=torch.ones(2, 8))
    assert call.to_wire() == '{"tool":"segment","args":{"target":"the red circle"}}'
    with pytest.raises(ValidationError):
        HybridCall(tool="segment", signal="not a tensor")


def test_toolspec_name_pattern_and_example_fill():
    with pytest.raises(ValidationError):
        ToolSpec(name="Bad Name", description="x", tasks=["t"], args_schema={})
    ex = ExampleRequest(request="blur the {ref}", args={"box": "{box}", "note": "{ref}!"})
    text, args = ex.fill({"ref": "red circle", "box": [1, 2, 3, 4]})
    assert text == "blur the red circle"
    assert args == {"box": [1, 2, 3, 4], "note": "red circle!"}


def test_results_roundtrip_through_json():
    rng = np.random.default_rng(0)
    m = rng.random((9, 11)) > 0.5
    img = rng.integers(0, 255, (9, 11, 3), dtype=np.uint8)
    results = [
        Masks(masks=[m], scores=[0.9], labels=["circle"]),
        Boxes(xyxy=[(1, 2, 3, 4)], labels=["star"], scores=[0.5]),
        Tracks(
            tracks=[
                Track(track_id=3, frames=[0, 1], xyxy=[(0, 0, 2, 2), (1, 1, 3, 3)], masks=[m, m])
            ],
            num_frames=2,
        ),
        ImageOut(image=img, edit_mask=m),
        Text(text="three circles"),
    ]
    adapter = TypeAdapter(Result)
    for r in results:
        back = adapter.validate_json(r.model_dump_json())
        assert type(back) is type(r)
    back = adapter.validate_json(results[0].model_dump_json())
    np.testing.assert_array_equal(back.masks[0], m)
    back = adapter.validate_json(results[3].model_dump_json())
    np.testing.assert_array_equal(back.image, img)


def test_result_validation_and_observations():
    with pytest.raises(ValidationError):
        Masks(masks=[np.zeros((2, 2), bool)], scores=[])
    with pytest.raises(ValidationError):
        Boxes(xyxy=[(0, 0, 1, 1)], labels=[], scores=[1.0])
    with pytest.raises(ValidationError):
        Track(track_id=1, frames=[0, 1], xyxy=[(0, 0, 1, 1)])
    m = np.zeros((100, 100), bool)
    m[52:97, 40:88] = True
    assert (
        Masks(masks=[m], scores=[1.0]).observation() == "1 mask(s): area 2160 px, box (40,52,88,97)"
    )
    assert Boxes(xyxy=[], labels=[], scores=[]).observation() == "no objects found"


def test_every_error_crosses_a_process_boundary_with_its_fields():
    """Errors are pickled between processes (Ray replicas → the agent) and must come back as
    the same type with the same fields and message."""
    import pickle

    from switchboard.core.errors import (
        InvalidInputError,
        NotFoundError,
        SpecialistFailedError,
        SpecialistTimeoutError,
        UnknownToolError,
    )

    for err in (
        InvalidInputError("bad box"),
        NotFoundError("I can't find a bus"),
        UnknownToolError("paint", ["edit", "segment"]),
        SpecialistFailedError("segment", "ValueError: boom"),
        SpecialistTimeoutError("edit", 12.5),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert vars(back) == vars(err)
