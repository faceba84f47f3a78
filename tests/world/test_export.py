import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from switchboard.world import generate_scene, generate_video, split_seeds
from switchboard.world.export import (
    export_coco,
    export_edits,
    export_mot,
    export_requests,
    export_yolo,
)


def test_coco_export_loads_in_pycocotools_and_matches_masks(tmp_path):
    path = export_coco(tmp_path / "coco", "val", 6)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 6
    for img_id, seed in zip(sorted(coco.getImgIds()), split_seeds("val", 6), strict=True):
        scene = generate_scene(seed)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert len(anns) == len(scene.objects)
        for ann, m, obj in zip(anns, scene.masks, scene.objects, strict=True):
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), m)
            assert coco.loadCats(ann["category_id"])[0]["name"] == obj.shape
            assert ann["area"] == int(mask_utils.area(ann["segmentation"]))
        assert (tmp_path / "coco" / coco.loadImgs(img_id)[0]["file_name"]).is_file()


@pytest.mark.parametrize("label,classes", [("shape", 8), ("color_shape", 64)])
def test_yolo_export_passes_ultralytics_dataset_check(tmp_path, label, classes):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    path = export_yolo(tmp_path / "yolo", 8, 4, size=128, label=label)
    data = check_det_dataset(str(path))
    assert data["nc"] == classes
    ds = YOLODataset(img_path=data["val"], data=data, imgsz=128, augment=False, task="detect")
    expected = sum(len(generate_scene(s, size=128).objects) for s in split_seeds("val", 4))
    assert sum(len(lb["cls"]) for lb in ds.labels) == expected


def test_mot_export_rows_match_the_clip(tmp_path):
    seq = export_mot(tmp_path, "test", 1, size=96, num_frames=8)[0]
    clip = generate_video(split_seeds("test", 1)[0], size=96, num_frames=8)
    rows = [line.split(",") for line in (seq / "gt" / "gt.txt").read_text().split()]
    assert len(rows) == int(clip.present.sum())
    frame, tid, left, top, w, h = (float(v) for v in rows[0][:6])
    k = int(tid) - 1
    np.testing.assert_allclose(
        [left, top, left + w, top + h], clip.boxes[int(frame) - 1, k], atol=0.05
    )
    assert len(list((seq / "img1").glob("*.png"))) == 8
    assert "seqLength=8" in (seq / "seqinfo.ini").read_text()


def test_jsonl_exports_parse(tmp_path):
    lines = export_requests(tmp_path, "train", 20).read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == 20 and all(r["intents"] and r["text"] for r in recs)
    lines = export_edits(tmp_path, "val", 5, size=128).read_text().splitlines()
    for rec in map(json.loads, lines):
        for key in ("before", "after", "mask"):
            assert (tmp_path / rec[key]).is_file()
