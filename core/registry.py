"""The registry of specialists: built-ins, entry-point plugins and run-time registrations.

Third-party packages declare plugins in the entry-point group ``switchboard.specialists``::

    [project.entry-points."switchboard.specialists"]
    blur = "switchboard_blur:BlurSpecialist"

Instances are created lazily on first use, so registering a tool loads no weights.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

from .calls import ToolSpec
from .errors import SwitchboardError, UnknownToolError
from .specialist import Specialist

ENTRY_POINT_GROUP = "switchboard.specialists"


class PluginLoadError(SwitchboardError):
    """An entry-point plugin could not be imported or is not a :class:`Specialist`."""


def _check_class(cls: object, where: str) -> type[Specialist]:
    if not (isinstance(cls, type) and issubclass(cls, Specialist)):
        raise PluginLoadError(f"{where} is not a Specialist subclass: {cls!r}")
    for attr in ("name", "description", "tasks", "Args"):
        if not hasattr(cls, attr):
            raise PluginLoadError(f"{where} lacks the class attribute {attr!r}")
    return cls


class Registry:
    """Name → specialist class, with one lazily created instance per name."""

    def __init__(self, builtins: Mapping[str, type[Specialist]] | None = None) -> None:
        self._classes: dict[str, type[Specialist]] = {}
        self._instances: dict[str, Specialist] = {}
        self._making = threading.Lock()
        for name, cls in (builtins or {}).items():
            self.register(cls, name=name)

    def register(
        self, cls: type[Specialist], *, name: str | None = None, replace: bool = False
    ) -> type[Specialist]:
        """Add a specialist class; usable as a decorator. Refuses to shadow a name by accident."""
        cls = _check_class(cls, getattr(cls, "__qualname__", repr(cls)))
        key = name or cls.name
        if key != cls.name:
            raise PluginLoadError(f"registered as {key!r} but the class is named {cls.name!r}")
        if key in self._classes and self._classes[key] is not cls and not replace:
            raise PluginLoadError(f"a specialist named {key!r} is already registered")
        cls.spec()  # validates name pattern and the Args schema now, not at first call
        self._classes[key] = cls
        self._instances.pop(key, None)
        return cls

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every installed plugin of ``group``; returns the names added."""
        added = []
        for ep in entry_points(group=group):
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin must not take the whole system down
                raise PluginLoadError(
                    f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}"
                ) from exc
            self.register(_check_class(cls, f"plugin {ep.name!r}"), name=ep.name)
            added.append(ep.name)
        return added

    def unregister(self, name: str) -> None:
        self._classes.pop(name, None)
        inst = self._instances.pop(name, None)
        if inst is not None:
            inst.unload()

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def cls(self, name: str) -> type[Specialist]:
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownToolError(name, self.names()) from None

    def get(self, name: str) -> Specialist:
        """The (lazily created, not yet loaded) instance for ``name``."""
        inst = self._instances.get(name)
        if inst is None:
            with self._making:  # concurrent turns asking at once get one instance
                if name not in self._instances:
                    made = self.cls(name)()
                    made.registry = self
                    self._instances[name] = made
                inst = self._instances[name]
        return inst

    def specs(self, names: Iterable[str] | None = None) -> list[ToolSpec]:
        return [self.cls(n).spec() for n in (names if names is not None else self.names())]

    def loaded(self) -> list[str]:
        return [n for n, inst in self._instances.items() if inst.loaded]
