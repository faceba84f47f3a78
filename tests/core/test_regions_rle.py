import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils
from pydantic import TypeAdapter, ValidationError
from switchboard.core import (
    Box,
    InvalidInputError,
    Mask,
    Points,
    Region,
    decode_rle,
    encode_rle,
    region_box,
    rle_area,
)


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_rle_roundtrip_and_agrees_with_pycocotools(mask):
    rle = encode_rle(mask)
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert rle_area(rle) == mask.sum()
    coco = mask_utils.frPyObjects(rle, *rle["size"])
    np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), mask)


def test_rle_hand_case():
    mask = np.array([[0, 1], [1, 1]], dtype=bool)  # column-major: 0,1,1,1
    assert encode_rle(mask) == {"size": [2, 2], "counts": [1, 3]}
    assert encode_rle(np.ones((1, 2), bool))["counts"] == [0, 2]
    with pytest.raises(ValueError):
        decode_rle({"size": [2, 2], "counts": [1, 1]})


def test_points_box_mask_validation_and_range_checks():
    p = Points(xy=[(1, 2), (3, 4)], labels=[1, 0])
    p.check(5, 5)
    with pytest.raises(InvalidInputError, match="outside"):
        p.check(3, 3)
    with pytest.raises(ValidationError):
        Points(xy=[(1, 2)], labels=[1, 1])
    with pytest.raises(ValidationError):
        Points(xy=[(1, 2)], labels=[2])
    with pytest.raises(ValidationError):
        Box(xyxy=(5, 5, 2, 8))
    b = Box(xyxy=(1, 1, 4, 3))
    assert b.to_mask(5, 5).sum() == 6
    with pytest.raises(InvalidInputError):
        b.check(3, 3)
    m = Mask(mask=np.eye(4, dtype=bool))
    assert region_box(m, 4, 4) == (0, 0, 4, 4)
    with pytest.raises(InvalidInputError, match="image is"):
        m.check(5, 4)
    with pytest.raises(InvalidInputError, match="empty"):
        Mask(mask=np.zeros((3, 3), bool)).check(3, 3)


def test_region_union_parses_json_with_rle_mask():
    adapter = TypeAdapter(Region)
    m = np.zeros((4, 6), bool)
    m[1:3, 2:5] = True
    region = adapter.validate_json(Mask(mask=m).model_dump_json())
    assert isinstance(region, Mask)
    np.testing.assert_array_equal(region.mask, m)
    assert isinstance(adapter.validate_python({"kind": "box", "xyxy": [0, 0, 2, 2]}), Box)
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "circle"})
