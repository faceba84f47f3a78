"""Hybrid calls and the tool description the router is trained against.

A :class:`HybridCall` is what the router emits: a schema-valid text call (``tool`` + ``args``)
and, optionally, a signal tensor projected from its hidden states into the specialist's
conditioning space, shaped by the specialist's :class:`SignalSpec`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import InvalidInputError


class SignalSpec(BaseModel):
    """A specialist's signal space: ``num_tokens`` vectors of size ``dim`` (``[K, D]``)."""

    model_config = ConfigDict(frozen=True)

    num_tokens: int = Field(gt=0, le=256)
    dim: int = Field(gt=0, le=8192)

    def check(self, signal: Any) -> Any:
        """Accept a ``[K, D]`` or ``[1, K, D]`` tensor/array; raise on any other shape."""
        shape = tuple(getattr(signal, "shape", ()))
        if shape == (1, self.num_tokens, self.dim):
            return signal[0]
        if shape != (self.num_tokens, self.dim):
            raise InvalidInputError(
                f"signal shape {shape} does not match the tool's signal spec "
                f"({self.num_tokens}, {self.dim})"
            )
        return signal


PLACEHOLDERS = ("ref", "box", "color", "shape", "place")


def fill_placeholders(value: Any, values: dict[str, Any]) -> Any:
    """Replace ``{name}`` placeholders: a string that is exactly ``"{name}"`` becomes the value
    itself (e.g. a box list); other strings are formatted; lists and dicts recursively."""
    if isinstance(value, str):
        key = value[1:-1]
        if value.startswith("{") and value.endswith("}") and key in values:
            return values[key]
        return value.format(**values)
    if isinstance(value, list | tuple):
        return [fill_placeholders(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill_placeholders(v, values) for k, v in value.items()}
    return value


class ExampleRequest(BaseModel):
    """A request a user might make and the arguments the tool should get for it.

    Text and argument values may use the placeholders ``{ref}`` (a referring expression of an
    object), ``{box}`` (its XYXY pixel box), ``{color}``, ``{shape}`` and ``{place}``; they are
    filled from ShapeWorld scenes when the router is taught a new tool.
    """

    request: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)

    def fill(self, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The request text and arguments with placeholders replaced by ``values``."""
        return fill_placeholders(self.request, values), fill_placeholders(self.args, values)


class ToolSpec(BaseModel):
    """Everything the router and the UI need to know about a specialist, as plain data."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    description: str = Field(min_length=1)
    tasks: list[str] = Field(min_length=1)
    args_schema: dict[str, Any]
    signal: SignalSpec | None = None
    examples: list[ExampleRequest] = Field(default_factory=list)
    media: list[str] = Field(default_factory=lambda: ["image"])


class HybridCall(BaseModel):
    """One call: which tool, its arguments, and an optional ``[K, D]`` signal tensor."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tool: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    signal: Any | None = Field(default=None, exclude=True)

    @field_validator("signal")
    @classmethod
    def _signal_is_tensor(cls, value: Any) -> Any:
        if value is not None and not hasattr(value, "shape"):
            raise ValueError(f"signal must be a tensor or array, got {type(value).__name__}")
        return value

    def to_wire(self) -> str:
        """The JSON inside ``<call>…</call>`` (the signal travels as tensors, not text)."""
        return self.model_dump_json(include={"tool", "args"})
