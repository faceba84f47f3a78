"""The specialist contract: what every built-in and plugin tool implements.

A specialist declares ``name``, ``description``, ``tasks``, an ``Args`` pydantic model, an
optional ``signal`` (:class:`SignalSpec`) and example requests; it implements ``load`` (the
expensive step, once) and ``run`` (cheap, repeated). Callers use ``__call__``, which validates
media, arguments and signal and wraps any failure in :class:`SpecialistFailedError`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import nullcontext
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from .calls import ExampleRequest, SignalSpec, ToolSpec
from .errors import InvalidInputError, SpecialistFailedError, SwitchboardError
from .media import Image, Video
from .results import Boxes, ImageOut, Masks, Text, Tracks

Media = Image | Video | None
ResultType = Masks | Boxes | Tracks | ImageOut | Text


def _readable(exc: ValidationError) -> str:
    """A pydantic error as words a user reads: each field and what is wrong with it, without
    pydantic's echo of the whole input ("color: Input should be a valid string; box: Tuple
    should have at most 4 items after validation, not 5")."""
    parts = []
    for e in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in e.get("loc", ())) or "arguments"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts[:4]) + (f" (and {len(parts) - 4} more)" if len(parts) > 4 else "")


class Specialist(ABC):
    """Base class of every tool. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]
    description: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    Args: ClassVar[type[BaseModel]]
    signal: ClassVar[SignalSpec | None] = None
    examples: ClassVar[tuple[ExampleRequest, ...]] = ()
    # Which media the tool takes: "image", "video", or "none" (e.g. generation from text).
    media: ClassVar[tuple[str, ...]] = ("image",)
    # True: calls may run at the same time (the tool keeps no state between the steps of a
    # call, e.g. one that waits on a service); False (the default): one call at a time, under
    # the instance's ``lock``.
    thread_safe: ClassVar[bool] = False

    def __init__(self) -> None:
        self.device: str | None = None
        self.dtype: Any = None
        # The registry that made this instance (``Registry.get`` sets it): where a specialist
        # finds the collaborators it uses (segment's detector, track's segmenter), so an agent
        # built with a registry of its own uses its own models throughout.
        self.registry: Any = None
        # One call of this model at a time (turns run concurrently; a model's state, such as
        # SAM's image embedding, is not shared between calls). Re-entrant: a call may use its
        # own public methods. A peer's lock is taken after its caller's, never the reverse.
        self.lock = threading.RLock()

    @classmethod
    def spec(cls) -> ToolSpec:
        return ToolSpec(
            name=cls.name,
            description=cls.description,
            tasks=list(cls.tasks),
            args_schema=cls.Args.model_json_schema(),
            signal=cls.signal,
            examples=list(cls.examples),
            media=list(cls.media),
        )

    @classmethod
    def args_for(cls, intent: Any) -> dict[str, Any] | None:
        """The arguments this tool takes for a ShapeWorld intent (an object with ``task``,
        ``target_text`` and ``params``), or None when it does not serve that intent. This is how
        the router's training targets follow the registry: the world states what the user
        wants, each tool says how it would be called for it. Plugins may leave it None and teach
        the router with ``examples`` instead."""
        return None

    @classmethod
    def parse_args(cls, args: dict[str, Any] | BaseModel) -> BaseModel:
        """Validate raw arguments against ``Args``; raise :class:`InvalidInputError`."""
        if isinstance(args, cls.Args):
            return args
        if isinstance(args, BaseModel):
            args = args.model_dump()
        try:
            return cls.Args.model_validate(args)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid arguments for {cls.name}: {_readable(exc)}") from exc

    @property
    def loaded(self) -> bool:
        return self.device is not None

    def load(self, device: str = "cpu", dtype: Any = None) -> Specialist:
        """Load weights (the expensive step). Subclasses extend this and call ``super()``."""
        self.device, self.dtype = device, dtype
        return self

    def unload(self) -> None:
        """Drop weights so the memory can be reused; ``load`` brings them back."""
        self.device = None

    @abstractmethod
    def run(self, media: Media, args: BaseModel, signal: Any | None = None) -> ResultType:
        """Do the work on validated inputs."""

    @classmethod
    def check_call(
        cls, media: Media, args: dict[str, Any] | BaseModel, with_signal: bool = False
    ) -> BaseModel:
        """What every call of the tool is checked for before it runs, wherever it runs (here,
        or a deployment's replica: ``agent.ray_serve`` checks before sending): the media kind,
        the arguments (returned parsed) and whether it takes a signal.
        :class:`InvalidInputError` otherwise."""
        kind = "none" if media is None else ("video" if isinstance(media, Video) else "image")
        if kind not in cls.media:
            raise InvalidInputError(f"tool {cls.name!r} takes {'/'.join(cls.media)}, got {kind}")
        parsed = cls.parse_args(args)
        if with_signal and cls.signal is None:
            raise InvalidInputError(f"tool {cls.name!r} takes no signal")
        return parsed

    def __call__(
        self, media: Media, args: dict[str, Any] | BaseModel, signal: Any | None = None
    ) -> ResultType:
        (out,) = self.call_many([(media, args, signal)])
        if isinstance(out, BaseException):
            raise out
        return out

    def model_lock(self) -> threading.RLock:
        """The instance's :attr:`lock` (one call of the model at a time); a plugin whose
        ``__init__`` skips ours still gets one (``setdefault`` is atomic)."""
        return self.__dict__.setdefault("lock", threading.RLock())

    def call_many(self, calls: list[tuple[Media, Any, Any]]) -> list[ResultType | SwitchboardError]:
        """Several calls ``(media, args, signal)`` at once (a deployment's batch; a single call
        is a batch of one): each checked as a call is, the valid ones run together by
        :meth:`run_many` under the instance's lock (one network pass where the tool can).
        Each item is its result or its error — an :class:`InvalidInputError` for a bad call, a
        :class:`SpecialistFailedError` for a crash inside the tool — so one bad call fails
        alone."""
        out: list[Any] = [None] * len(calls)
        todo: list[tuple[int, Media, BaseModel, Any]] = []
        for i, (media, args, signal) in enumerate(calls):
            try:
                todo.append((i, media, self.check_call(media, args, signal is not None), signal))
            except SwitchboardError as exc:
                out[i] = exc
        if not todo:
            return out
        with nullcontext() if self.thread_safe else self.model_lock():
            if not self.loaded:  # (the signal space may depend on the weights loaded)
                self.load()
            ready = []
            for i, media, parsed, signal in todo:
                try:
                    ready.append((i, media, parsed, None if signal is None else
                                  self.signal.check(signal)))  # fmt: skip
                except SwitchboardError as exc:
                    out[i] = exc
            try:
                results = self.run_many([(m, p, s) for _, m, p, s in ready])
            except Exception as exc:  # a run_many that fails as a whole fails each call
                results = [exc] * len(ready)
        for (i, *_), got in zip(ready, results, strict=True):
            if isinstance(got, BaseException) and not isinstance(got, SwitchboardError):
                # a crashed specialist becomes a typed error, never a crash
                failed = SpecialistFailedError(self.name, f"{type(got).__name__}: {got}")
                failed.__cause__ = got
                got = failed
            out[i] = got
        return out

    def run_many(
        self, calls: list[tuple[Media, BaseModel, Any]]
    ) -> list[ResultType | BaseException]:
        """:meth:`run` for several checked calls, each item its result or its exception. The
        default runs them one by one; a tool that can do several in one pass (the detector:
        one network batch) overrides it."""
        out: list[Any] = []
        for media, parsed, signal in calls:
            try:
                out.append(self.run(media, parsed, signal))
            except Exception as exc:
                out.append(exc)
        return out


def check_object_resolved(args: Any) -> None:
    """Refuse an ``object`` index the agent did not turn into a box: the index points into the
    object list of the agent's turn, which a specialist called on its own does not have."""
    if getattr(args, "object", None) is not None and getattr(args, "box", None) is None:
        raise InvalidInputError(
            f"object #{args.object} is an index into the agent's object list; called directly, "
            "pass the object's box (or a target) instead"
        )
