"""Dense labels of the vision stage agree with the scene they come from."""

from __future__ import annotations

import numpy as np
from switchboard.router.pretrain import batch_targets, patch_labels
from switchboard.world.scene import COLOR_NAMES, SHAPES, generate_scene


def test_patch_labels_name_the_object_under_each_patch():
    scene = generate_scene(11, num_objects=3)
    grid, cell = 16, scene.size // 16
    lab = patch_labels(scene, grid)
    assert lab["color"].shape == (grid * grid,) and lab["ltrb"].shape == (grid * grid, 4)
    for i, obj in enumerate(scene.objects):
        m = scene.masks[i].reshape(grid, cell, grid, cell).mean(axis=(1, 3)).reshape(-1)
        p = int(m.argmax())  # the patch this object covers most
        if m[p] >= 0.5:  # it owns that patch (nothing else can cover more than half)
            assert lab["color"][p] == COLOR_NAMES.index(obj.color) + 1
            assert lab["shape"][p] == SHAPES.index(obj.shape) + 1
            x1, y1, x2, y2 = scene.boxes[i] / scene.size
            cy, cx = ((p // grid) + 0.5) / grid, ((p % grid) + 0.5) / grid  # row-major: y first
            want = [cx - x1, cy - y1, x2 - cx, y2 - cy]
            np.testing.assert_allclose(lab["ltrb"][p], want, atol=1e-6)
    union = scene.masks.any(0).reshape(grid, cell, grid, cell).mean(axis=(1, 3)).reshape(-1)
    assert (lab["color"][union == 0] == 0).all() and (lab["ltrb"][union == 0] == 0).all()


def test_batch_targets_carry_image_labels():
    scenes = [generate_scene(s) for s in (3, 4)]
    t = batch_targets(scenes, 16)
    assert t["color"].shape == (2, 256) and t["count"].tolist() == [len(s.objects) for s in scenes]
