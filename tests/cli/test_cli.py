from switchboard.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "world" in result.output


def test_world_preview_writes_a_sheet(tmp_path):
    from PIL import Image

    out = tmp_path / "sheet.png"
    result = runner.invoke(
        app, ["world", "preview", "--seed", "0", "--out", str(out), "--scenes", "4"]
    )
    assert result.exit_code == 0, result.output
    img = Image.open(out)
    assert img.width >= 4 * 256 and img.height >= 3 * 256
    # Deterministic by seed.
    out2 = tmp_path / "again.png"
    runner.invoke(app, ["world", "preview", "--seed", "0", "--out", str(out2), "--scenes", "4"])
    assert out.read_bytes() == out2.read_bytes()


def test_world_export_and_bad_split(tmp_path):
    result = runner.invoke(
        app, ["world", "export", "requests", "--out", str(tmp_path), "--n", "5", "--split", "test"]
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "requests-test.jsonl").read_text().splitlines()) == 5
    bad = runner.invoke(app, ["world", "export", "coco", "--out", str(tmp_path), "--split", "nope"])
    assert bad.exit_code != 0


def test_run_one_shot_writes_the_reply_and_the_mask(tmp_path):
    """``switchboard run`` with the trained router: a segment request on a ShapeWorld image
    writes reply.txt, calls.json and the mask; a box off the image is a clear error."""
    from switchboard.core.media import encode_png
    from switchboard.world.scene import generate_scene

    scene = generate_scene(11)
    names = [f"{o.color} {o.shape}" for o in scene.objects]
    name = next(n for n in names if names.count(n) == 1)
    image = tmp_path / "in.png"
    image.write_bytes(encode_png(scene.image))
    out = tmp_path / "out"
    home = ["--home", str(tmp_path / "home")]
    result = runner.invoke(
        app, ["run", f"segment the {name}", "--image", str(image), "--out", str(out), *home]
    )
    assert result.exit_code == 0, result.output
    assert "[segment ok" in result.output
    assert {"reply.txt", "calls.json", "mask_0.png"} <= {p.name for p in out.iterdir()}
    bad = runner.invoke(
        app,
        [
            "run",
            "segment this",
            "--image",
            str(image),
            "--box",
            "0 0 999 10",
            "--out",
            str(out),
            *home,
        ],
    )
    assert bad.exit_code == 2 and "outside" in bad.output


def test_only_refuses_before_measuring_when_the_other_parts_are_not_saved(tmp_path, monkeypatch):
    """``--only`` merges into the saved full run; a saved run that lacks some other part would
    drop it from the report, so the command refuses before it measures anything."""
    import json

    from switchboard.cli import app

    monkeypatch.chdir(tmp_path)
    results = tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    (results / "bench.json").write_text(json.dumps({"hardening": {}, "seconds": {}}))
    out = runner.invoke(app, ["bench", "--only", "kernels"])
    assert out.exit_code == 2
    assert "lacks loads" in out.output and "switchboard bench" in out.output
    out = runner.invoke(app, ["eval", "all", "--only", "agent"])
    assert out.exit_code == 2 and "eval-all-test.json" in out.output
    assert not (tmp_path / "runs").exists()  # nothing was measured or written
