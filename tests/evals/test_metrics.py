import math

import numpy as np
import pytest
from switchboard.evals.metrics import (
    box_ap,
    box_iou,
    call_scores,
    edit_psnr,
    mask_iou,
    mot_metrics,
    psnr,
)


def test_mask_and_box_iou_hand_values():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:4] = True  # 16 px
    b[2:6, 2:6] = True  # 16 px, overlap 4
    assert mask_iou(a, b) == pytest.approx(4 / 28)
    assert mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    iou = box_iou(np.array([[0, 0, 4, 4]]), np.array([[2, 2, 6, 6], [10, 10, 12, 12]]))
    np.testing.assert_allclose(iou, [[4 / 28, 0.0]])


def test_box_ap_perfect_missing_and_empty():
    gt = [{"boxes": [[10, 10, 50, 50], [60, 60, 90, 90]], "labels": ["circle", "star"]}]
    perfect = [{"boxes": gt[0]["boxes"], "labels": gt[0]["labels"], "scores": [0.9, 0.8]}]
    assert box_ap(gt, perfect, ["circle", "star"])["AP"] == pytest.approx(1.0)
    half = [{"boxes": [[10, 10, 50, 50]], "labels": ["circle"], "scores": [0.9]}]
    # The star class has AP 0, the circle class AP 1: the mean over classes is 0.5.
    assert box_ap(gt, half, ["circle", "star"])["AP50"] == pytest.approx(0.5)
    none = [{"boxes": [], "labels": [], "scores": []}]
    assert box_ap(gt, none, ["circle", "star"])["AP"] == 0.0


def test_mota_idf1_hand_case():
    box = np.array([0, 0, 10, 10], float)
    far = np.array([50, 50, 60, 60], float)
    gt = [{1: box}, {1: box}, {1: box}, {1: box}]
    # Frame 0: matched to 7; frame 1: missed; frame 2: matched to 8 (switch) + a false positive;
    # frame 3: matched to 8.
    pred = [{7: box}, {}, {8: box, 9: far}, {8: box}]
    m = mot_metrics(gt, pred)
    assert (m["FN"], m["FP"], m["IDSW"]) == (1, 1, 1)
    assert m["MOTA"] == pytest.approx(1 - 3 / 4)
    # Best global assignment: gt 1 <-> pred 8 on 2 frames; IDF1 = 2*2 / (4 gt + 4 pred).
    assert m["IDF1"] == pytest.approx(4 / 8)
    perfect = mot_metrics(gt, [{5: box}] * 4)
    assert perfect["MOTA"] == 1.0 and perfect["IDF1"] == 1.0


def test_psnr_hand_values():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    assert math.isinf(psnr(a, b))
    b[0, 0] = 255  # MSE over all = 255^2 / 4
    assert psnr(a, b) == pytest.approx(10 * math.log10(4))
    mask = np.zeros((2, 2), bool)
    mask[0, 0] = True
    assert psnr(a, b, mask) == pytest.approx(0.0)
    out = edit_psnr(a, b, b, mask)
    assert math.isinf(out["edit_psnr"]) and math.isinf(out["keep_psnr"])
    with pytest.raises(ValueError):
        psnr(a, b, np.zeros((2, 2), bool))


def test_call_scores():
    gold = [
        {"tool": "segment", "args": {"target": "red circle", "box": None}},
        {"tool": "edit", "args": {"task": "recolor", "color": "blue"}},
    ]
    assert call_scores(gold, gold) == {
        "exact_match": 1.0,
        "tool_accuracy": 1.0,
        "arg_accuracy": 1.0,
    }
    pred = [
        {"tool": "segment", "args": {"target": "Red Circle ", "box": None}},
        {"tool": "edit", "args": {"task": "recolor", "color": "green"}},
    ]
    s = call_scores(pred, gold)
    assert s == {"exact_match": 0.5, "tool_accuracy": 1.0, "arg_accuracy": 0.75}
    s = call_scores([gold[1]], gold)
    assert s["tool_accuracy"] == 0.0 and s["exact_match"] == 0.0
    assert call_scores([*gold, gold[0]], gold)["exact_match"] == pytest.approx(2 / 3)
