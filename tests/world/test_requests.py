from collections import Counter

from switchboard.world import TEMPLATES, generate_scene, make_request, make_requests
from switchboard.world.requests import (
    EXTRA_INDEX,
    IMAGE_TASKS,
    TRAIN_ONLY_TEMPLATES,
    VIDEO_EDIT_TASKS,
    templates_for,
)


def test_templates_are_split_without_overlap():
    for task in TEMPLATES:
        parts = [{t for _, t in templates_for(task, s)} for s in ("train", "val", "test")]
        assert all(parts), task
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_test_split_uses_only_unseen_phrasing():
    for r in make_requests("test", 200):
        if r.task == "ask_media":
            continue
        assert r.template % 5 == 4, r
    train = [r.template for r in make_requests("train", 200) if r.task != "ask_media"]
    assert {t % 5 for t in train if t < EXTRA_INDEX} <= {0, 1, 2}
    assert any(t >= EXTRA_INDEX for t in train)  # the train-only phrasings are drawn too


def test_train_only_phrasings_never_repeat_held_out_templates():
    held_out = {t for s in ("val", "test") for task in TEMPLATES for _, t in templates_for(task, s)}
    extra = [t for ts in TRAIN_ONLY_TEMPLATES.values() for t in ts]
    assert len(extra) == len(set(extra)) and not held_out & set(extra)
    for task in TRAIN_ONLY_TEMPLATES:
        assert task in TEMPLATES
        assert not {t for _, t in templates_for(task, "test")} & set(TRAIN_ONLY_TEMPLATES[task])


def test_requests_are_deterministic_and_cover_every_task():
    assert make_request(7, "test") == make_request(7, "test")
    tasks = Counter(r.task for r in make_requests("train", 600))
    # The video edits are drawn only by name (their default weight is 0, so that every other
    # draw stays what it was).
    assert set(tasks) == {*TEMPLATES, "ask_media"} - set(VIDEO_EDIT_TASKS)


def test_video_edit_requests_name_an_object_seen_on_the_clip():
    from switchboard.world.video import generate_video

    for task, op in VIDEO_EDIT_TASKS.items():
        for r in make_requests("val", 5, task=task):
            clip = generate_video(r.seed)
            (intent,) = r.intents
            assert r.media == "video" and r.task == task and intent.task == op
            k = [o.id for o in clip.objects].index(intent.targets[0])
            assert clip.present[0, k] and clip.present[:, k].mean() >= 0.5
            assert intent.target_text in r.text


def test_intents_refer_to_real_objects_and_no_tool_requests_carry_answers():
    for r in make_requests("val", 300):
        assert r.text and r.intents
        if r.task in ("chat", "caption", "question", "ask_media"):
            assert r.answer
        if r.media == "image":
            ids = {o.id for o in generate_scene(r.seed).objects}
            for intent in r.intents:
                assert set(intent.targets) <= ids
        if r.task == "ask_media":
            assert r.media == "none" and r.intents[0].params["for"] in IMAGE_TASKS


def test_multi_step_requests():
    seen_all = seen_two = seen_colour = False
    for r in make_requests("train", 800):
        if r.task in ("remove_all", "recolor_all"):
            sc = generate_scene(r.seed)
            group = r.intents[0].params["group"]
            want = [o.id for o in sc.objects if all(getattr(o, k) == v for k, v in group.items())]
            assert [i.targets[0] for i in r.intents] == want
            assert len({i.target_text for i in r.intents}) == 1  # the group's words, said once
            seen_all |= len(r.intents) > 1
        if r.task == "recolor_all":  # a colour none of the members has already
            (color,) = {i.params["color"] for i in r.intents}
            assert color in r.text and all(sc.objects[sc.index(i)].color != color for i in want)
            seen_colour = True
        if r.task == "segment_recolor":
            assert [i.task for i in r.intents] == ["segment", "recolor"]
            seen_two = True
    assert seen_all and seen_two and seen_colour
