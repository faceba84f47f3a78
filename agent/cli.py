"""The ``switchboard`` command line: ``serve | chat | run | train | eval | bench | world``.

Commands are added as their parts land; ``switchboard --help`` lists what works today.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

app = typer.Typer(
    help="Switchboard: an agent that sees and edits pixels.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
world_app = typer.Typer(
    help="ShapeWorld: the synthetic data every model here learns from.", no_args_is_help=True
)
app.add_typer(world_app, name="world")


class ExportKind(StrEnum):
    coco = "coco"
    yolo = "yolo"
    mot = "mot"
    requests = "requests"
    edits = "edits"


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as _version

    typer.echo(_version("switchboard"))


@world_app.command("preview")
def world_preview(
    out: Path = typer.Option(Path("sheet.png"), help="PNG file to write."),
    seed: int = typer.Option(0, help="First seed; the sheet is deterministic by seed."),
    scenes: int = typer.Option(8, min=1, max=32, help="Number of scenes on the sheet."),
) -> None:
    """Write a contact sheet of scenes, a video and edit pairs with ground-truth overlays."""
    from switchboard.world.preview import write_contact_sheet

    path = write_contact_sheet(out, seed=seed, scenes=scenes)
    typer.echo(f"wrote {path}")


@world_app.command("export")
def world_export(
    kind: ExportKind = typer.Argument(..., help="Which format to write."),
    out: Path = typer.Option(..., help="Output folder."),
    split: str = typer.Option("train", help="train | val | test"),
    n: int = typer.Option(100, min=1, help="Number of scenes/clips/requests/edits."),
    n_val: int = typer.Option(20, min=1, help="YOLO only: number of validation images."),
    size: int = typer.Option(256, min=32, max=2048, help="Image side in pixels."),
    label: str = typer.Option("shape", help="COCO/YOLO classes: 'shape' or 'color_shape'."),
) -> None:
    """Export ShapeWorld as COCO JSON, a YOLO dataset, MOT sequences or JSONL."""
    from switchboard.world import export

    if kind is ExportKind.coco:
        path = export.export_coco(out, split, n, size=size, label=label)
    elif kind is ExportKind.yolo:
        path = export.export_yolo(out, n, n_val, size=size, label=label)
    elif kind is ExportKind.mot:
        path = export.export_mot(out, split, n, size=min(size, 256))[0].parent
    elif kind is ExportKind.requests:
        path = export.export_requests(out, split, n)
    else:
        path = export.export_edits(out, split, n, size=size)
    typer.echo(f"wrote {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
