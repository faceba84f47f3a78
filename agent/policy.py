"""The graph's policy backed by the trained router: one :meth:`RouterPolicy.step` is one
constrained decode (with the calls' signal embeddings when asked and the router has heads).

Text calls are the default: on the agent's task suite (``switchboard eval agent``, 210 held-out
tasks) the router's text calls succeed 0.624 and hybrid calls 0.462 — the signal heads pick the
wrong object more often than the segment tool's own reading of the words (docs/signals.md).
``with_signals=True`` (``Agent.load(signals=True)``, ``--signals``) sends them."""

from __future__ import annotations

from typing import Any

import numpy as np

from .graph import Step


class RouterPolicy:
    def __init__(self, router: Any = None, with_signals: bool = False) -> None:
        """``router``: a :class:`~switchboard.router.inference.Router` (default: the committed
        router-tiny with its signal heads, loaded on first use)."""
        self._router = router
        self.with_signals = with_signals

    @property
    def router(self) -> Any:
        if self._router is None:
            from switchboard.router.inference import Router

            self._router = Router.load()
        return self._router

    def step(
        self,
        messages: list[dict[str, str]],
        images: list[np.ndarray],
        frame_index: list[int | None],
        regions: list[dict[str, Any]],
        objects: list[Any] | None = None,
    ) -> Step:
        from switchboard.router.model import Region

        router = self.router
        regs = []
        if images:
            h, w = images[0].shape[:2]
            regs = [Region.of(h, w, **r) for r in regions]
        signals = self.with_signals and router.heads is not None and bool(images)
        reply, _ = router.route(
            messages, images, regs, frame_index, with_signals=signals, objects=objects
        )
        return Step(text=reply.prose, calls=list(reply.calls))
