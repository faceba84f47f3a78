"""`switchboard bench`'s report: its section of RESULTS.md shows exactly what a run returned,
leaves the evaluation's part alone, and a re-run of some sections keeps the others.

The input is a fixed run (``data/bench-quick.json``: ``run_bench(quick=True, only=("world",
"perception", "kernels", "router"))`` saved as it came out, on a 2-core machine busy with a
training run, so its times are no reference), so these tests measure nothing: speed and memory
are ``switchboard bench``'s business, never a test's."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from switchboard.bench.sections import BEGIN, END, bench_block, write_bench
from switchboard.evals.report import merge_runs

EVAL_PART = "# Results\n\nProduced by `switchboard eval all` …\n\n| segment | box_mIoU | 0.902 |\n"
FIXTURE = Path(__file__).parent / "data" / "bench-quick.json"


@pytest.fixture
def run():
    return json.loads(FIXTURE.read_text())


def test_the_section_shows_what_the_run_measured_and_nothing_else(run, tmp_path):
    pe, w = run["perception"], run["world"]
    md = tmp_path / "RESULTS.md"
    md.write_text(EVAL_PART)
    write_bench(run, md, "switchboard bench --quick")
    text = md.read_text()
    assert text.startswith(EVAL_PART) and text.count(BEGIN) == 1 and text.count(END) == 1
    assert "--quick: a few repeats" in text and run["commit"] in text
    seg = pe["segment_call"]
    row = f"| segment call after `set_image` | {seg['p50_ms']:.0f} / {seg['p95_ms']:.0f} ms |"
    assert row in text
    assert f"{pe['track_frame_masks_ms']:.0f} ms" in text
    assert f"{w['workers_2_s']:.1f} s on two" in text
    assert "### Router" in text and "The same routes decoded in fp32 alone" in text
    assert "### Model loads" not in text  # a section not run is not reported

    run["perception"]["track_frame_masks_ms"] = 123456.0  # written again: replaced, not added
    write_bench(run, md, "switchboard bench --quick")
    again = md.read_text()
    assert again.count(BEGIN) == 1 and "123456 ms" in again and again.startswith(EVAL_PART)
    assert bench_block(md).startswith(BEGIN) and bench_block(md).endswith(END)


def test_a_rerun_of_one_section_keeps_the_others(run, tmp_path):
    new = copy.deepcopy(run)
    new["router"]["route_p50_ms"] = 4321.0
    new["seconds"]["router"] = 99.0
    new["date"], new["commit"] = "2099-01-01 00:00 UTC", "abcdef0"
    merged = merge_runs(
        run, new, ("router",), "switchboard bench --quick --only router", "sections"
    )
    assert merged["world"] == run["world"] and merged["perception"] == run["perception"]
    assert merged["router"]["route_p50_ms"] == 4321.0 and merged["seconds"]["router"] == 99.0
    others = sum(v for k, v in run["seconds"].items() if k not in ("all", "router"))
    assert merged["seconds"]["all"] == round(others + 99.0, 1)
    command = "switchboard bench --quick --only router"
    assert merged["updates"][-1] == {
        "sections": ["router"],
        "date": new["date"],
        "commit": "abcdef0",
        "command": command,
    }
    md = tmp_path / "R.md"
    write_bench(merged, md, "switchboard bench --quick")
    text = md.read_text()
    assert "Re-run later: router by `switchboard bench --quick --only router`" in text
    assert "### ShapeWorld generation" in text and "4321" in text
