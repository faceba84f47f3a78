"""switchboard.specialists: the built-in tools and the process-wide registry.

``BUILTINS`` is the one dict of built-in specialists. Plugins installed with an entry point in
the group ``switchboard.specialists`` are added by :func:`default_registry`; ``register()`` adds
one at run time. Importing this package loads no model: specialists load on first use.
"""

from __future__ import annotations

import os
from typing import Any

# Nothing is installed at run time: Ultralytics would pip-install a missing requirement (e.g.
# pi-heif, when PIL cannot identify an upload's bytes) unless told not to, before it is imported.
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

from switchboard.core import Registry, Specialist  # noqa: E402

from .detect import DetectSpecialist
from .edit import EditSpecialist
from .segment import SegmentSpecialist
from .track import TrackSpecialist

BUILTINS: dict[str, type[Specialist]] = {
    "segment": SegmentSpecialist,
    "detect": DetectSpecialist,
    "track": TrackSpecialist,
    "edit": EditSpecialist,
}

_registry: Registry | None = None


def peer(specialist: Any, name: str) -> Any:
    """The specialist ``name`` of the registry ``specialist`` belongs to (the process-wide
    default for an instance made outside any registry)."""
    registry = getattr(specialist, "registry", None) or default_registry()
    return registry.get(name)


def default_registry() -> Registry:
    """The process-wide registry: built-ins plus installed plugins (created once)."""
    global _registry
    if _registry is None:
        _registry = Registry(BUILTINS)
        _registry.load_entry_points()
    return _registry


def register(cls: type[Specialist], *, replace: bool = False) -> type[Specialist]:
    """Register a specialist class at run time (also usable as a class decorator)."""
    return default_registry().register(cls, replace=replace)


__all__ = ["BUILTINS", "default_registry", "register"]
