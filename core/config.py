"""Settings, read from ``SWITCHBOARD_*`` environment variables (pydantic-settings).

``profile="tiny"`` (the default) uses the small models trained on ShapeWorld and committed under
``trained_models/``; ``profile="full"`` points the specialists and the router at full-size
checkpoints given by path.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    profile: Literal["tiny", "full"] = "tiny"
    # 40 MP: larger than any phone photo, small enough that one decoded RGB image stays < 128 MB.
    max_image_pixels: int = Field(40_000_000, gt=0)
    max_video_frames: int = Field(2_000, gt=0)
    # A video's decoded RGB frames may take at most this many MiB (a 22 KB mp4 can hold 400
    # black 720p frames: 1.1 GB once decoded). Checked from the file's stated size and length
    # before decoding, and frame by frame while decoding (a file may understate them).
    max_video_mb: int = Field(1_024, gt=0)
    max_upload_bytes: int = Field(64 * 1024 * 1024, gt=0)
    # Turns a server holds at once (the one running and those waiting for it); past it a
    # request is refused with 503 and Retry-After instead of queueing without bound.
    max_queued_turns: int = Field(8, gt=0)
    # Turns that run at once in one process (the rest of the queue waits for a slot); turns of
    # one session always run one after another. 4: x1.32 the turns/s of one at a time under 8
    # clients on 2 cores (`switchboard bench --only scale`); the router batches their routes.
    concurrent_turns: int = Field(4, gt=0)
    # Requests that cost a turn or a session (messages, new sessions, undo/redo) per minute from
    # one client (its token, else its address); past it 429 with Retry-After. A minute's worth
    # may come at once.
    rate_per_minute: int = Field(120, gt=0)
    # What happens to a streamed turn whose client disconnects before its end: "finish" (it
    # runs to its end and is stored: a reload shows it) or "cancel" (it stops before its next
    # step, or never starts if it was waiting, and is stored failed, "cancelled").
    on_disconnect: Literal["finish", "cancel"] = "finish"
    # Sessions one client may keep; creating one more is refused (429) until some are deleted.
    max_sessions: int = Field(1_000, gt=0)
    # Bearer token(s) for the HTTP API, comma-separated; each sees only its own sessions.
    api_token: str | None = None
    home: Path = Field(default_factory=lambda: Path.home() / ".switchboard")
    # Where conversations live: any SQLAlchemy URL (default: sqlite in <home>/switchboard.db).
    # A postgresql+psycopg:// URL keeps LangGraph's checkpoints in the same database, so
    # several server processes (replicas) can share it and resume each other's turns.
    database: str | None = None
    # Where artifact bytes live: a folder (default <home>/artifacts; shared between machines
    # when replicas share a database), or "database" for the database's own table.
    artifacts: str | None = None
    # How long a process's claim on its pending turns holds unless renewed (every third of
    # it): after a replica dies without trace, another resumes its turns this late at most.
    turn_lease_s: float = Field(30.0, gt=0)
    models_dir: Path | None = None
    # A router folder to use instead of <models_dir>/router-tiny (e.g. one taught plugins
    # with `switchboard train router --add-tools`).
    router: Path | None = None
    # The dtype of the router's decoding steps (its prompt is prefilled in fp32 whatever this
    # says). Half-width weights halve a step's memory traffic, which bounds it on a CPU: route
    # p50 x0.49 on 2 cores for +270 MB; "float32" decodes in fp32, with no second copy.
    router_decode: Literal["float16", "bfloat16", "float32"] = "float16"
    device: str = "cpu"
    # Unload the least recently used specialists while the process's resident memory is over
    # this many MiB (checked between a turn's steps; None: keep whatever was loaded).
    memory_budget_mb: float | None = Field(None, gt=0)
    # Full-profile weights (user-provided paths; the tiny profile uses trained_models/).
    detect_weights: Path | None = None
    # Rename the detector's classes, as JSON ({"Normal": "person"}) or "old=new,old=new": the
    # words the object list, the replies and the detect filters use (e.g. a checkpoint whose
    # classes are "Normal"/"Fall" that finds people).
    detect_names: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    sam_checkpoint: Path | None = None
    sam_model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_h"
    tracker: Literal["bytetrack", "botsort"] = "bytetrack"
    # Stable Diffusion inpainting weights (folder or hub id) and, optionally, InstructPix2Pix
    # weights for whole-image instructions.
    edit_weights: str | None = None
    edit_instruct_weights: str | None = None

    @field_validator("detect_names", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().startswith("{"):
            return json.loads(value)
        if isinstance(value, str):
            pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("detect_names: JSON or 'old=new,old=new'")
            return {a.strip(): b.strip() for a, b in pairs}
        return value


# The trained checkpoints ship inside the distribution as the package ``switchboard.trained_models``
# (the top-level ``trained_models/`` folder): found through importlib.resources, so an installed
# wheel finds its own copy and a source checkout (editable install) the folder itself.
MODELS_PACKAGE = "switchboard.trained_models"
REPO_MODELS_DIR = Path(__file__).resolve().parents[1] / "trained_models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests construct :class:`Settings` directly)."""
    return Settings()


def models_dir() -> Path:
    """Where trained checkpoints live: ``SWITCHBOARD_MODELS_DIR``, else the installed package's
    ``trained_models`` (the repository's folder in a source checkout)."""
    return get_settings().models_dir or packaged_models_dir()


@lru_cache(maxsize=1)
def packaged_models_dir() -> Path:
    """The ``switchboard.trained_models`` package's folder (a plain folder on disk: installs
    are unzipped), else the source tree's ``trained_models/``."""
    from importlib import resources

    try:
        found = Path(str(resources.files(MODELS_PACKAGE)))
    except (ModuleNotFoundError, TypeError):
        return REPO_MODELS_DIR
    return found if found.is_dir() else REPO_MODELS_DIR
