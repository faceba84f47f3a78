"""detect on the committed YOLOv8n: quality on held-out scenes, queries, full-weights path."""

import pytest
from switchboard.core import Image, InvalidInputError
from switchboard.evals.specialists import evaluate_detect
from switchboard.world import generate_scene
from switchboard.world.splits import split_seeds


def test_quality_on_held_out_scenes(detector):
    res = evaluate_detect(detector, "test", 30)
    assert res["mAP50"] >= 0.88, res
    assert res["mAP50_95"] >= 0.65, res
    assert res["color_accuracy"] >= 0.95, res


def test_queries_by_shape_colour_and_both(detector):
    """Over held-out scenes, the count of objects a query returns is right almost always."""
    right = total = single_right = 0
    for seed in split_seeds("test", 16):
        scene = generate_scene(seed + 20)
        img = Image(pixels=scene.image)
        obj = max(scene.objects, key=lambda o: scene.masks[scene.index(o.id)].sum())
        for query, want in (
            (f"{obj.shape}s", [o for o in scene.objects if o.shape == obj.shape]),
            (f"all {obj.color} objects", [o for o in scene.objects if o.color == obj.color]),
        ):
            total += 1
            right += len(detector(img, {"query": query}).xyxy) == len(want)
        out = detector(img, {"query": f"the {obj.color} {obj.shape}"})
        single_right += len(out.xyxy) == 1 and out.labels[0] == f"{obj.color} {obj.shape}"
    assert right / total >= 0.8, (right, total)
    assert single_right >= 14, single_right


def test_explicit_filters_and_errors(detector):
    img = Image(pixels=generate_scene(2).image)
    with pytest.raises(InvalidInputError, match="can't find"):
        detector(img, {"shape": "dragon"})
    with pytest.raises(InvalidInputError):
        detector(img, {"score_threshold": 2})
    assert detector(img, {"color": "no-such-colour"}).xyxy == []
    # the router's "detect every object" → shape "object": no class filter; plurals are classes
    every = detector(img, {})
    assert len(detector(img, {"shape": "object"}).xyxy) == len(every.xyxy) > 0
    assert len(detector(img, {"shape": "Shapes"}).xyxy) == len(every.xyxy)
    label = every.labels[0].split()[-1]
    plural = detector(img, {"shape": label + ("es" if label.endswith("s") else "s")})
    assert plural.xyxy and all(lb.endswith(label) for lb in plural.labels)


def test_full_mode_loads_any_ultralytics_weights(tmp_path, monkeypatch):
    """Full profile: an Ultralytics ``.pt`` by path (here one saved from an untrained model)."""
    from switchboard.core import config
    from switchboard.specialists.detect import DetectSpecialist
    from ultralytics import YOLO

    path = tmp_path / "any.pt"
    YOLO("yolov8n.yaml").save(str(path))
    monkeypatch.setenv("SWITCHBOARD_PROFILE", "full")
    monkeypatch.setenv("SWITCHBOARD_DETECT_WEIGHTS", str(path))
    config.get_settings.cache_clear()
    try:
        det = DetectSpecialist().load()
        assert len(det.class_names) == 80  # a YAML-built model names its classes "0".."79"
        out = det(Image(pixels=generate_scene(0).image), {"shape": "0"})
        assert out.kind == "boxes"
    finally:
        config.get_settings.cache_clear()


def test_batched_frames_match_one_frame_at_a_time(detector):
    """Track detects video frames in batches; each must equal detecting that frame alone."""
    images = [generate_scene(s).image for s in split_seeds("test", 4)]
    for (b, s, c), image in zip(detector.detect_batch(images, conf=0.25), images, strict=True):
        b1, s1, c1 = detector.detect_all(image, conf=0.25)
        assert len(b) == len(b1) and (c == c1).all()
        assert abs(b - b1).max(initial=0) < 0.5 and abs(s - s1).max(initial=0) < 1e-3
    assert detector.detect_batch([]) == []


def test_detecting_leaves_torchs_thread_count_alone():
    """Ultralytics' predictor setup calls ``torch.set_num_threads(cores - 1)``: on 2 cores every
    model run after the first detection (router, SAM, diffusion) would get one thread."""
    import torch
    from switchboard.specialists.detect import DetectSpecialist

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fresh = DetectSpecialist().load()  # a new predictor: its setup runs select_device
        fresh(Image(pixels=generate_scene(split_seeds("test", 1)[0]).image), {})
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
