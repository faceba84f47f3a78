"""The error hierarchy every public boundary raises.

Callers catch :class:`SwitchboardError` to handle everything of ours; the subclasses say what
went wrong so the agent can turn each into a message for the user and an observation for the
router instead of a crash.
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base class of every error Switchboard raises on purpose."""


class InvalidInputError(SwitchboardError):
    """The caller's input (media, region, request, arguments) is malformed or out of range.

    Deliberately not a ``ValueError``: pydantic would wrap it into a ``ValidationError`` and
    the caller would lose the type.
    """


class UnknownToolError(SwitchboardError, KeyError):
    """A call names a specialist that is not registered."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        self.known = sorted(known or [])
        super().__init__(name)

    def __reduce__(self) -> tuple:  # pickled across processes (Ray replicas) with its fields
        return type(self), (self.name, self.known)

    def __str__(self) -> str:
        known = ", ".join(self.known) if self.known else "none registered"
        return f"unknown tool {self.name!r} (registered: {known})"


class SpecialistFailedError(SwitchboardError, RuntimeError):
    """A specialist raised while loading or running; wraps the original exception."""

    def __init__(self, tool: str, message: str) -> None:
        self.tool, self.message = tool, message
        super().__init__(f"specialist {tool!r} failed: {message}")

    def __reduce__(self) -> tuple:
        return type(self), (self.tool, self.message)


class SpecialistTimeoutError(SwitchboardError, TimeoutError):
    """A specialist did not answer within its time budget."""

    def __init__(self, tool: str, seconds: float) -> None:
        self.tool = tool
        self.seconds = seconds
        super().__init__(f"specialist {tool!r} timed out after {seconds:.1f} s")

    def __reduce__(self) -> tuple:
        return type(self), (self.tool, self.seconds)


class MalformedCallError(SwitchboardError):
    """A reply does not follow the hybrid-call wire format (unclosed or stray tags, invalid
    JSON, unknown tool, arguments that fail the tool's schema, wrong signal tokens)."""


class NotFoundError(InvalidInputError):
    """A target said in words matches nothing in the image ("segment the bus" where the
    detector sees no bus). The message says so in words a user reads, with what *is* there;
    the tool produces nothing for it, never a guess."""
