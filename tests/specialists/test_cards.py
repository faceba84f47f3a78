"""Model cards are rendered from the JSON that training and evaluation wrote."""

from __future__ import annotations

import json

from switchboard.specialists.cards import write_model_card


def test_card_for_a_specialist_lists_training_and_eval(tmp_path):
    folder = tmp_path / "segment-tiny"
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps({"steps_done": 10, "previous_stage": {"a": 1}}))
    (folder / "eval-test.json").write_text(json.dumps({"split": "test", "box_mIoU": 0.91234}))
    text = write_model_card(folder).read_text()
    assert "| steps_done | 10 |" in text and "Started from the previous stage" in text
    assert "## Held-out evaluation (test split)" in text and "| box_mIoU | 0.9123 |" in text


def test_card_for_the_router_has_a_table_per_stage_and_model_rows(tmp_path):
    folder = tmp_path / "router-tiny"
    folder.mkdir()
    (folder / "router.json").write_text("{}")
    stages = {"vision": {"steps_done": 5}, "invoke": {"steps_done": 7}}
    (folder / "train.json").write_text(json.dumps(stages))
    rows = [
        {"model": "router-tiny", "tool_selection": 0.98},
        {"model": "base", "tool_selection": 0.5},
    ]
    (folder / "eval-test.json").write_text(json.dumps(rows))
    text = write_model_card(folder).read_text()
    assert "### vision" in text and "### invoke" in text and "LoRA adapter" in text
    assert "| model | tool_selection |" in text
    assert "| router-tiny | 0.98 |" in text and "| base | 0.5 |" in text
