"""`switchboard eval all`'s report: RESULTS.md shows exactly the numbers a run returned, with
its plots, keeps the bench's section, and a re-run of some evals keeps the others.

The input is a fixed run (``data/eval-all-test.json``: the run that wrote docs/RESULTS.md, its
per-item miss lists cut short), so these tests evaluate nothing: each eval has its own tests on
small inputs, and the whole evaluation is ``switchboard eval all``'s business."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from switchboard.bench.sections import BEGIN, END
from switchboard.evals.report import EVALS, headline, merge_runs, write_report

FIXTURE = Path(__file__).parent / "data" / "eval-all-test.json"


@pytest.fixture
def run():
    return json.loads(FIXTURE.read_text())


def test_the_report_shows_the_numbers_the_run_measured(run, tmp_path):
    assert set(EVALS) <= set(run) and set(EVALS) <= set(run["seconds"])
    bench = f"{BEGIN}\n## Speed and memory (`switchboard bench`)\n…\n{END}"
    (tmp_path / "RESULTS.md").write_text(f"# Results\n\nan earlier run\n\n{bench}\n")
    md = write_report(run, tmp_path / "RESULTS.md", tmp_path / "results", "switchboard eval all")
    text = md.read_text()
    assert "an earlier run" not in text and text.rstrip().endswith(bench)  # bench's part kept
    assert "switchboard eval all" in text and run["commit"] in text
    for name in ("per_task", "router_vs_base", "signals"):
        png = tmp_path / "results" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"results/{name}.png" in text
    rows = headline(run)
    assert {task for task, *_ in rows} == {
        "segment",
        "detect",
        "track",
        "edit",
        "edit-video",
        "router",
        "signals",
        "agent",
        "conversations",
    }
    for task, key, value, _ in rows:  # each headline number is in the table as measured
        assert re.search(rf"\| {re.escape(task)} \| {re.escape(key)} \| {value:.3f} \|", text)
    assert f"| segment | box_mIoU | {run['segment']['box_mIoU']:.3f} |" in text
    assert f"**{run['agent']['success']:.3f}**" in text
    hybrid = run["agent"]["hybrid"]["success"]  # the agent with hybrid calls, beside text calls
    assert f"| **all** | **{run['agent']['success']:.3f}** | **{hybrid:.3f}** |" in text
    assert f"| generate | {run['edit']['generate_success']:.3f} |" in text
    assert f"| remove | {run['edit-video']['remove_success']:.3f} |" in text  # video edits
    assert "| grounding_iou50 |" in text and "Per task (the items that call a tool)" in text
    conv = run["conversations"]  # the conversation table, per turn position
    assert f"| **all** | {conv['turns']} | **{conv['turn_success']:.3f}** |" in text
    assert f"**{conv['chat_turns_that_edited']} of {conv['chat_turns_with_picture']}**" in text


def test_a_rerun_of_some_evals_keeps_the_others(run, tmp_path):
    new = copy.deepcopy(run)
    new["agent"]["success"] = 0.987
    new["seconds"]["agent"] = 12.0
    new["date"], new["commit"] = "2099-01-01 00:00 UTC", "abcdef0"
    merged = merge_runs(run, new, ("agent",), "switchboard eval all --only agent", "evals")
    assert merged["segment"] == run["segment"] and merged["router"] == run["router"]
    assert merged["agent"]["success"] == 0.987 and merged["seconds"]["agent"] == 12.0
    assert merged["updates"][-1]["evals"] == ["agent"]
    md = write_report(merged, tmp_path / "RESULTS.md", tmp_path / "results", "switchboard eval all")
    assert "**0.987**" in md.read_text()
