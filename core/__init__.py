"""switchboard.core: the contract every other package builds on.

Media, regions, hybrid calls, tool specs, typed results, errors, settings, the specialist base
class and the registry. Imports nothing else of ours.
"""

from .calls import ExampleRequest, HybridCall, SignalSpec, ToolSpec, fill_placeholders
from .config import Settings, get_settings
from .errors import (
    InvalidInputError,
    MalformedCallError,
    NotFoundError,
    SpecialistFailedError,
    SpecialistTimeoutError,
    SwitchboardError,
    UnknownToolError,
)
from .media import Image, Video, decode_image, encode_png, load_image, load_video, save_video
from .regions import Box, Mask, Points, Region, region_box
from .registry import ENTRY_POINT_GROUP, PluginLoadError, Registry
from .results import (
    Boxes,
    ImageOut,
    Masks,
    Result,
    Text,
    Track,
    Tracks,
    VideoOut,
    mask_to_box,
    xyxy_iou,
)
from .rle import decode_rle, encode_rle, rle_area
from .specialist import Media, Specialist

__all__ = [
    "ENTRY_POINT_GROUP",
    "Box",
    "Boxes",
    "ExampleRequest",
    "HybridCall",
    "Image",
    "ImageOut",
    "InvalidInputError",
    "MalformedCallError",
    "Mask",
    "Masks",
    "NotFoundError",
    "Media",
    "PluginLoadError",
    "Points",
    "Region",
    "Registry",
    "Result",
    "Settings",
    "SignalSpec",
    "Specialist",
    "SpecialistFailedError",
    "SpecialistTimeoutError",
    "SwitchboardError",
    "Text",
    "ToolSpec",
    "Track",
    "Tracks",
    "VideoOut",
    "UnknownToolError",
    "Video",
    "decode_image",
    "decode_rle",
    "fill_placeholders",
    "encode_png",
    "encode_rle",
    "get_settings",
    "load_image",
    "load_video",
    "mask_to_box",
    "region_box",
    "rle_area",
    "save_video",
    "xyxy_iou",
]
