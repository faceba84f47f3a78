"""Routing one turn: prompt → constrained reply → parsed calls (and signal hidden states).

router = Router.load()                       # trained_models/router-tiny, the registry's tools
reply, decoded = router.route(messages, images=[image], regions=[region])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from switchboard.core import Registry
from switchboard.core.config import models_dir

from .codec import Reply, parse_reply
from .decoding import ConstrainedDecoder, Decoded
from .model import Region, RouterModel
from .signals import SignalHeads, router_text_span


class Router:
    def __init__(
        self,
        model: RouterModel,
        registry: Registry,
        merge: bool = True,
        heads: SignalHeads | None = None,
    ) -> None:
        """``merge`` folds the LoRA adapter and the new token rows into the base weights
        (peft's ``merge_and_unload``; the same replies, measured 2.4x faster on 2 cores: the
        unmerged embedding rebuilt its full matrix on every forward). It changes ``model``
        in place, so a model meant for more training is passed with ``merge=False``."""
        if merge and hasattr(model.llm, "merge_and_unload"):
            model.llm = model.llm.merge_and_unload()
        self.model = model.eval()
        self.registry = registry
        self.heads = heads.eval() if heads is not None else None
        self._proposer: Any = None
        vocab = model.llm.get_input_embeddings().weight.shape[0]
        self.decoder = ConstrainedDecoder(model.tokenizer, registry, vocab)

    @classmethod
    def load(
        cls,
        folder: str | Path | None = None,
        registry: Registry | None = None,
        signals: str | Path | None = None,
    ) -> Router:
        """The router in ``folder`` (default: the committed router-tiny) with the signal heads
        in ``signals`` (default: the router folder's own, when it has them)."""
        from switchboard.specialists import default_registry

        folder = Path(folder) if folder else models_dir() / "router-tiny"
        if signals is None and SignalHeads.exists(folder):
            signals = folder
        heads = SignalHeads.load(signals) if signals is not None else None
        return cls(RouterModel.from_pretrained(folder), registry or default_registry(), heads=heads)

    def prompt_ids(
        self, messages: list[dict[str, str]], images: list[np.ndarray], video: bool
    ) -> torch.Tensor:
        """Chat-template ids; ``{media}`` in a message becomes the image placeholders."""
        text = self.model.chat_prompt(messages, len(images), video)
        return self.model.tokenizer(text, add_special_tokens=False, return_tensors="pt")[
            "input_ids"
        ]

    @torch.no_grad()
    def route(
        self,
        messages: list[dict[str, str]],
        images: list[np.ndarray] | None = None,
        regions: list[Region] | None = None,
        frame_index: list[int | None] | None = None,
        with_signals: bool = False,
        max_new_tokens: int = 96,
    ) -> tuple[Reply, Decoded]:
        images = list(images or [])
        video = bool(frame_index) and any(t is not None for t in frame_index)
        if with_signals and self.heads is None:
            raise ValueError("this router has no signal heads (route with with_signals=False)")
        ids = self.prompt_ids(messages, images, video)
        feats = self.model.encode_images(images) if images else None
        emb = self.model.embed(ids, images, regions, frame_index if video else None, feats)
        decoded = self.decoder.generate(
            self.model.llm, emb, max_new_tokens=max_new_tokens, with_signals=with_signals
        )
        text = decoded.text.replace(self.model.tokenizer.eos_token or "\0", "")
        reply = parse_reply(text, self.registry)
        decoded.features = feats
        decoded.prompt_ids = ids[0].tolist()
        if with_signals and images:
            decoded.objects = self.proposer(images[0])
        if with_signals:
            self.attach_signals(reply, decoded)
        return reply, decoded

    @property
    def proposer(self) -> Any:
        """The object memory's detector (the heads' ``config.detector``), loaded on first use."""
        if self._proposer is None:
            from .objects import ObjectProposer, detector_path

            name = self.heads.config.detector if self.heads is not None else "detect-tiny"
            self._proposer = ObjectProposer(detector_path(name))
        return self._proposer

    def signal_inputs(self, decoded: Decoded, k: int) -> dict[str, torch.Tensor | None]:
        """What the heads read for the ``k``-th call with signals (keyword arguments of
        :class:`SignalHeads`): its ``<sig_k>`` states ``hidden`` ``[1, K, d]``, the first image's
        patch features ``memory`` ``[1, g², dv]`` (or None), the last-layer and layer-0 states
        over the request and the call ``text``, ``words`` ``[1, L, d]``, and the first image's
        object memory ``objects`` ``[1, M, object_dim]`` (or None)."""
        seq = decoded.prompt_ids + decoded.token_ids
        first = decoded.signal_positions[k]
        span = router_text_span(self.model, seq, first)
        mem = None if decoded.features is None else decoded.features[:1].float()
        with torch.no_grad():
            words = self.model.llm.get_input_embeddings()(torch.tensor(seq[span]))
        objects = decoded.objects
        return {
            "hidden": decoded.signal_hidden[k][None].float(),
            "memory": mem,
            "text": decoded.states[span][None].float(),
            "words": words[None].float(),
            "objects": None if objects is None or mem is None else objects[None].float(),
        }

    def attach_signals(self, reply: Reply, decoded: Decoded, heads: Any = None) -> None:
        """Project each call's ``<sig_k>`` states (with the request/call states and the image's
        patch features) through its tool's signal head into ``call.signal`` (``[K, D]``)."""
        heads = heads or self.heads
        k = 0
        for call in reply.calls:
            if self.registry.cls(call.tool).signal is None:
                continue
            if k >= len(decoded.signal_hidden):
                raise ValueError(f"the call to {call.tool!r} came without its signal tokens")
            call.signal = heads(call.tool, **self.signal_inputs(decoded, k)).signal[0]
            k += 1

    def route_item(self, item: Any, **kw: Any) -> tuple[Reply, Decoded]:
        """Route a :class:`~switchboard.router.data.Item`."""
        regions = [Region.of(*m.shape, mask=m) for m in item.regions]
        return self.route(item.messages, item.images, regions, item.frame_index, **kw)
