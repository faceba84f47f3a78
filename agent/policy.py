"""The graph's policy backed by the trained router: one :meth:`RouterPolicy.step` is one
constrained decode, with the calls' signal embeddings when the router has signal heads.

Hybrid calls are the default: each call the router writes carries its signal, which refines
the text call's own prompt (SAM gets the named object's box plus the signal's gated residual;
where the call names no object the signal is the prompt). On the agent's task suite
(``switchboard eval agent``, 210 held-out tasks) hybrid calls succeed as often as text calls,
task type for task type, and referring segmentation gains where the detector missed the
referent (docs/signals.md). ``with_signals=False`` (``Agent.load(signals=False)``,
``--no-signals``) makes text calls only.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .graph import Step


class RouterPolicy:
    def __init__(self, router: Any = None, with_signals: bool = True) -> None:
        """``router``: a :class:`~switchboard.router.inference.Router` (default: the committed
        router-tiny with its signal heads, loaded on first use)."""
        self._router = router
        self.with_signals = with_signals
        self._loading = threading.Lock()  # concurrent turns load one router

    @property
    def calls(self) -> str:
        """How the router calls tools: ``hybrid`` (text call + signal) or ``text``; a loaded
        router without signal heads makes text calls whatever was asked."""
        loaded = self._router
        heads = loaded is None or loaded.heads is not None
        return "hybrid" if self.with_signals and heads else "text"

    @property
    def router(self) -> Any:
        if self._router is None:
            with self._loading:
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
        # The router decodes one route at a time (its own lock); turns overlap around it.
        reply, _ = router.route(
            messages, images, regs, frame_index, with_signals=signals, objects=objects
        )
        return Step(text=reply.prose, calls=list(reply.calls))
