"""`switchboard eval all --quick`: every eval runs through the same functions as its own
command, and RESULTS.md shows exactly the numbers the run returned, with its plots."""

from __future__ import annotations

import re

from switchboard.agent.bench import BEGIN, END
from switchboard.agent.report import EVALS, headline, run_evals, write_report


def test_eval_all_quick_writes_the_numbers_it_measured(tmp_path):
    res = run_evals("test", quick=True, log=lambda _: None)
    assert set(EVALS) <= set(res) and set(EVALS) <= set(res["seconds"])
    bench = f"{BEGIN}\n## Speed and memory (`switchboard bench`)\n…\n{END}"
    (tmp_path / "RESULTS.md").write_text(f"# Results\n\nan earlier run\n\n{bench}\n")
    md = write_report(res, tmp_path / "RESULTS.md", tmp_path / "results",
                      "switchboard eval all --quick")  # fmt: skip
    text = md.read_text()
    assert "an earlier run" not in text and text.rstrip().endswith(bench)  # bench's part kept
    assert "switchboard eval all --quick" in text and res["commit"] in text
    for name in ("per_task", "router_vs_base", "signals", "contact_sheet"):
        png = tmp_path / "results" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"results/{name}.png" in text
    rows = headline(res)
    assert {task for task, *_ in rows} == {"segment", "detect", "track", "edit", "router",
                                           "signals", "agent"}  # fmt: skip
    for task, key, value, _ in rows:  # each headline number is in the table as measured
        assert re.search(rf"\| {re.escape(task)} \| {re.escape(key)} \| {value:.3f} \|", text)
    assert f"| segment | box_mIoU | {res['segment']['box_mIoU']:.3f} |" in text
    assert f"**{res['agent']['success']:.3f}**" in text
    hybrid = res["agent"]["hybrid"]["success"]  # the agent with hybrid calls, beside text calls
    assert f"| **all** | **{res['agent']['success']:.3f}** | **{hybrid:.3f}** |" in text
    second = res["agent"]["conversation"]["after_turn_history_1"]["success"]
    assert f"| 1 earlier turn(s), second turn | {second:.3f} |" in text
    assert f"| generate | {res['edit']['generate_success']:.3f} |" in text
    assert "| grounding_iou50 |" in text and "Per task (the items that call a tool)" in text
