from switchboard.agent.cli import app
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
