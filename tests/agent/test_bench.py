"""`switchboard bench`: each section runs in a fresh process and measures the real components;
its section of RESULTS.md shows what the run returned and leaves the evaluation's part alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from switchboard.agent.bench import BEGIN, END, bench_block, run_bench, write_bench

EVAL_PART = "# Results\n\nProduced by `switchboard eval all` …\n\n| segment | box_mIoU | 0.902 |\n"


def test_bench_sections_measure_and_the_report_shows_what_they_measured(tmp_path):
    res = run_bench(quick=True, only=("world", "perception", "kernels"), log=lambda _: None)
    pe, w = res["perception"], res["world"]
    assert 0 < pe["segment_call"]["p50_ms"] <= pe["segment_call"]["p95_ms"]
    assert pe["track_frame_masks_ms"] > pe["detect_frame"]["p50_ms"] > 0
    # a fresh process per section: its peak holds the three models, not a neighbour's
    assert pe["peak_rss_mb"] >= pe["rss_all_loaded_mb"] > pe["rss_models_mb"] > 0
    assert w["scenes"] == 50 and w["workers_1_s"] > 0 and w["workers_2_s"] > 0
    assert res["kernels"]["linear_ce"]["torch"]["p50_ms"] > 0
    assert set(res["seconds"]) == {"world", "perception", "kernels", "all"}

    md = tmp_path / "RESULTS.md"
    md.write_text(EVAL_PART)
    write_bench(res, md, "switchboard bench --quick")
    text = md.read_text()
    assert text.startswith(EVAL_PART) and text.count(BEGIN) == 1 and text.count(END) == 1
    assert "--quick: a few repeats" in text and res["commit"] in text
    seg = pe["segment_call"]
    row = f"| segment call after `set_image` | {seg['p50_ms']:.0f} / {seg['p95_ms']:.0f} ms |"
    assert row in text
    assert f"{pe['track_frame_masks_ms']:.0f} ms" in text
    assert f"{w['workers_2_s']:.1f} s on two" in text
    assert "### Model loads" not in text  # a section not run is not reported

    res["perception"]["track_frame_masks_ms"] = 123456.0  # written again: replaced, not added
    write_bench(res, md, "switchboard bench --quick")
    again = md.read_text()
    assert again.count(BEGIN) == 1 and "123456 ms" in again and again.startswith(EVAL_PART)
    assert bench_block(md).startswith(BEGIN) and bench_block(md).endswith(END)


def test_the_cli_keeps_earlier_sections_when_one_is_run_again(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cli = [sys.executable, "-m", "switchboard.agent", "bench", "--quick", "--results", "R.md"]
    for only in ("world", "router"):
        subprocess.run([*cli, "--only", only], cwd=tmp_path, env=env, check=True,
                       capture_output=True, timeout=600)  # fmt: skip
    res = json.loads((tmp_path / "runs/bench/bench-quick.json").read_text())
    assert {"world", "router"} <= set(res) and res["updates"][0]["sections"] == ["router"]
    assert res["router"]["routes"] == 3 and res["router"]["route_p50_ms"] > 0
    # The default fp16 decoding against fp32 alone, on the same routes.
    fp32 = res["router"]["fp32"]
    assert res["router"]["decode"] == "float16" and fp32["route_p50_ms"] > 0
    assert 0 <= fp32["identical_replies"] <= 3 and fp32["p50_ratio"] > 0
    text = Path(tmp_path / "R.md").read_text()
    assert "### Router" in text and "### ShapeWorld generation" in text
    assert "The same routes decoded in fp32 alone" in text
    assert "Re-run later: router by `switchboard bench --quick" in text
