"""switchboard.world: ShapeWorld, the data every trained part learns from and is measured on.

Scenes, videos, edit pairs, language (captions, referring expressions, questions), user
requests with ground-truth intents, splits by seed range, exports and metrics.
"""

from .edits import EDIT_OPS, PLACES, EditError, EditPair, apply_edit, generate_edit
from .language import Referring, caption, questions, referring_expressions, relations
from .requests import TASKS, TEMPLATES, Intent, Request, make_request, make_requests
from .scene import COLOR_NAMES, COLORS, SHAPES, SIZE_NAMES, Scene, ShapeObject, generate_scene
from .splits import SPLITS, split_of, split_seeds
from .video import VideoClip, generate_video

__all__ = [
    "COLORS",
    "COLOR_NAMES",
    "EDIT_OPS",
    "PLACES",
    "SHAPES",
    "SIZE_NAMES",
    "SPLITS",
    "TASKS",
    "TEMPLATES",
    "EditError",
    "EditPair",
    "Intent",
    "Referring",
    "Request",
    "Scene",
    "ShapeObject",
    "VideoClip",
    "apply_edit",
    "caption",
    "generate_edit",
    "generate_scene",
    "generate_video",
    "make_request",
    "make_requests",
    "questions",
    "referring_expressions",
    "relations",
    "split_of",
    "split_seeds",
]
