"""Routing one turn: prompt → constrained reply → parsed calls (and signal hidden states).

router = Router.load()                       # trained_models/router-tiny, the registry's tools
reply, decoded = router.route(messages, images=[image], regions=[region])
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from switchboard.core import Registry
from switchboard.core.config import models_dir

from .codec import Reply, parse_reply
from .decoding import ConstrainedDecoder, Decoded, tools_for_media
from .model import Region, RouterModel
from .signals import SignalHeads, router_text_span

DECODE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _cast_copy(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of ``module`` with its floating-point weights in ``dtype``, built without a
    full-width copy first (``deepcopy(m).to(dtype)`` holds both: +428 MB measured for a
    257 MB copy of SmolLM2-135M). Each parameter is cast once and handed to ``deepcopy``
    through its memo, so tied weights stay tied (one Parameter, one cast). Buffers are cast
    too (the rotary ``inv_freq``), as ``.to(dtype)`` does: measured on 59 held-out items,
    58 replies match fp32's with fp16 buffers, 56 with fp32 buffers."""
    import copy

    memo: dict[int, Any] = {}
    for p in module.parameters():  # each shared Parameter once
        if p.is_floating_point():
            memo[id(p)] = torch.nn.Parameter(p.detach().to(dtype), requires_grad=False)
    return copy.deepcopy(module, memo).to(dtype).eval()


class Router:
    def __init__(
        self,
        model: RouterModel,
        registry: Registry,
        merge: bool = True,
        heads: SignalHeads | None = None,
        decode_dtype: torch.dtype | None = None,
    ) -> None:
        """``merge`` folds the LoRA adapter and the new token rows into the base weights
        (peft's ``merge_and_unload``; the same replies, measured 2.4x faster on 2 cores: the
        unmerged embedding rebuilt its full matrix on every forward). It changes ``model``
        in place, so a model meant for more training is passed with ``merge=False``.
        ``decode_dtype``: run the decoding steps on a copy of the (merged) LM in this dtype,
        after an fp32 prefill (:meth:`ConstrainedDecoder.generate`); None decodes with ``model``
        itself. The copy is a snapshot: not for a model that is still training."""
        if merge and hasattr(model.llm, "merge_and_unload"):
            model.llm = model.llm.merge_and_unload()
        self.model = model.eval()
        self.registry = registry
        self.heads = heads.eval() if heads is not None else None
        self._proposer: Any = None
        self._lock = threading.Lock()  # one decode at a time (shared caches)
        self._waiting: list[_Route] = []  # routes asked for, not yet taken into a decode
        self._waiting_lock = threading.Lock()
        self._signal_lock = threading.Lock()
        self._last: tuple[torch.Tensor, Any] | None = None  # (fed embeddings, KV cache)
        self._feats: dict[str, torch.Tensor] = {}  # images' hash → patch features (LRU)
        vocab = model.llm.get_input_embeddings().weight.shape[0]
        self.decoder = ConstrainedDecoder(model.tokenizer, registry, vocab)
        self.step_llm: Any = None
        own = model.llm.get_input_embeddings().weight.dtype
        if decode_dtype is not None and decode_dtype != own:
            self.step_llm = _cast_copy(model.llm, decode_dtype)

    @classmethod
    def load(
        cls,
        folder: str | Path | None = None,
        registry: Registry | None = None,
        signals: str | Path | None = None,
        decode: str | None = None,
    ) -> Router:
        """The router in ``folder`` (default: ``SWITCHBOARD_ROUTER``, else the committed
        router-tiny) with the signal heads in ``signals`` (default: the router folder's own,
        when it has them), decoding in ``decode`` ("float16", "bfloat16" or "float32"; default
        ``SWITCHBOARD_ROUTER_DECODE``, else "float16")."""
        from switchboard.core.config import get_settings
        from switchboard.specialists import default_registry

        decode = decode or get_settings().router_decode
        if decode not in DECODE_DTYPES:
            raise ValueError(f"decode must be one of {sorted(DECODE_DTYPES)}, not {decode!r}")
        if folder is None:
            folder = get_settings().router or models_dir() / "router-tiny"
        folder = Path(folder)
        if signals is None and SignalHeads.exists(folder):
            signals = folder
        heads = SignalHeads.load(signals) if signals is not None else None
        model = RouterModel.from_pretrained(folder)
        reg = registry or default_registry()
        return cls(model, reg, heads=heads, decode_dtype=DECODE_DTYPES[decode])

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
        objects: list[Any] | None = None,
    ) -> tuple[Reply, Decoded]:
        """One constrained reply to ``messages`` (the user's message holding ``{media}`` and
        the object list's text, :func:`~switchboard.router.prompt.user_message`); ``objects``
        are the listed ``SceneObject`` s of the first image, one per ``<object>`` token.

        Thread-safe, and batched: routes asked for while another is decoding wait, and are
        then decoded together, one forward pass per step for all of them
        (:meth:`ConstrainedDecoder.generate_batch`); a route alone decodes as it always did
        (with the KV prefix of the turn's previous route reused)."""
        images = list(images or [])
        if with_signals and self.heads is None:
            raise ValueError("this router has no signal heads (route with with_signals=False)")
        job = _Route(messages, images, regions, frame_index, with_signals, max_new_tokens,
                     objects)  # fmt: skip
        with self._waiting_lock:
            self._waiting.append(job)
        with self._lock:  # one decode at a time; whoever holds it takes every waiting route
            if not job.done.is_set():  # not decoded in another's batch: its own, with others
                with self._waiting_lock:
                    self._waiting.remove(job)
                    batch = [job, *self._waiting[: self.MAX_BATCH - 1]]
                    del self._waiting[: self.MAX_BATCH - 1]
                self._decode(batch)
        if job.error is not None:
            raise job.error
        decoded = job.decoded
        text = decoded.text.replace(self.model.tokenizer.eos_token or "\0", "")
        reply = parse_reply(text, self.registry)
        if with_signals:  # the object proposer's detector keeps state: one at a time
            with self._signal_lock:
                if images:
                    decoded.objects = self.proposer(images[0])
                    decoded.listed = list(objects) if objects is not None else None
                    decoded.image_side = float(max(images[0].shape[:2]))
                self.attach_signals(reply, decoded)
        return reply, decoded

    MAX_BATCH = 8  # routes decoded together at most

    def _decode(self, batch: list[_Route]) -> None:
        """Decode ``batch`` (holding the decode lock): each route's prompt embedded, then one
        :meth:`ConstrainedDecoder.generate` for a single route, or one batched decode for
        several. Each route's :class:`Decoded` (or its error) is set on it, and it is woken."""
        try:
            prepared = []
            for job in batch:
                try:
                    prepared.append((job, self._embed(job)))
                except Exception as exc:  # this route's failure alone
                    job.error = exc
            if len(prepared) == 1:
                job, emb = prepared[0]
                past = None if job.with_signals else self._reusable(emb[0])
                try:
                    job.decoded = self.decoder.generate(
                        self.model.llm,
                        emb,
                        max_new_tokens=job.max_new_tokens,
                        with_signals=job.with_signals,
                        past=past,
                        step_llm=self.step_llm,
                        tools=tools_for_media(self.registry, job.kind),
                    )
                    self._remember(emb[0], job.decoded)
                except Exception as exc:
                    job.error = exc
            elif prepared:
                self._last = None  # a batch leaves no single cache to reuse
                try:
                    outs = self.decoder.generate_batch(
                        self.model.llm,
                        [emb for _, emb in prepared],
                        [job.with_signals for job, _ in prepared],
                        [tools_for_media(self.registry, job.kind) for job, _ in prepared],
                        max_new_tokens=max(job.max_new_tokens for job, _ in prepared),
                        step_llm=self.step_llm,
                    )
                except Exception as exc:  # the batch itself failed: every route says why
                    outs = [exc] * len(prepared)
                for (job, _), got in zip(prepared, outs, strict=True):
                    if isinstance(got, Exception):
                        job.error = got
                    else:
                        job.decoded = got
            for job, _ in prepared:
                if job.decoded is not None:
                    job.decoded.features = job.features
                    job.decoded.prompt_ids = job.ids[0].tolist()
        finally:
            for job in batch:
                if job.decoded is None and job.error is None:
                    job.error = RuntimeError("the route was not decoded")
                job.done.set()

    def _embed(self, job: _Route) -> torch.Tensor:
        """A route's prompt embeddings ``[1, T, d]`` (its ids and the images' patch features
        are kept on it)."""
        video = bool(job.frame_index) and any(t is not None for t in job.frame_index)
        job.kind = "video" if video else ("image" if job.images else "none")
        job.ids = self.prompt_ids(job.messages, job.images, video)
        job.features = self._features(job.images) if job.images else None
        return self.model.embed(
            job.ids,
            job.images,
            job.regions,
            job.frame_index if video else None,
            job.features,
            job.objects,
        )

    # -- reuse between routes of one turn ------------------------------------------------------
    # The agent routes a turn several times: the request, then the request + the call + its
    # observation, ... Each prompt starts with the one before it (the system prompt, the image
    # tokens, the request), so the KV cache of the last route serves the next one's shared
    # prefix and only the new positions are prefilled; the image's patch features are reused
    # the same way. (Greedy replies can differ from a full prefill only by float rounding.)
    MIN_REUSE = 16
    FEATURES_KEPT = 8  # images whose patch features are kept (one per turn in flight)

    def _features(self, images: list[np.ndarray]) -> torch.Tensor:
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for im in images:
            h.update(str(im.shape).encode())
            h.update(np.ascontiguousarray(im).tobytes())
        key = h.hexdigest()
        feats = self._feats.pop(key, None)
        if feats is None:
            feats = self.model.encode_images(images)
        self._feats[key] = feats  # the newest last; concurrent turns each keep theirs
        while len(self._feats) > self.FEATURES_KEPT:
            self._feats.pop(next(iter(self._feats)))
        return feats

    def _reusable(self, emb: torch.Tensor) -> Any:
        """The last route's cache cropped to the prefix it shares with ``emb`` ``[T, d]``, or
        None when the shared prefix is short."""
        if self._last is None:
            return None
        fed, cache = self._last
        self._last = None  # a cache is cropped and extended in place: use it once
        m = min(len(fed), len(emb) - 1)
        same = (fed[:m] == emb[:m]).all(-1)
        n = m if bool(same.all()) else int((~same).nonzero()[0, 0])
        if n < self.MIN_REUSE:
            return None
        drop = n - cache.get_seq_length()  # this Cache.crop takes how many to remove (< 0)
        if drop < 0:
            cache.crop(drop)
        return cache

    def _remember(self, emb: torch.Tensor, decoded: Decoded) -> None:
        if decoded.cache is None or decoded.states is not None:  # signals: no reuse
            self._last = None
            return
        with torch.no_grad():
            ids = torch.tensor(decoded.token_ids, dtype=torch.long)
            tail = self.model.llm.get_input_embeddings()(ids)
        self._last = (torch.cat([emb, tail.to(emb.dtype)]), decoded.cache)

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

    def anchor_of(self, call: Any, decoded: Decoded) -> torch.Tensor | None:
        """The box ``[1, 4]`` (normalized by the image's longest side) of the listed object the
        text call names (its ``object`` index), or None."""
        k, listed = call.args.get("object"), decoded.listed
        if k is None or not listed or not 1 <= int(k) <= len(listed) or not decoded.image_side:
            return None
        box = torch.tensor(listed[int(k) - 1].xyxy, dtype=torch.float32) / decoded.image_side
        return box.clamp(0.0, 1.0)[None]

    def signal_for(
        self, call: Any, decoded: Decoded, k: int, heads: Any = None, refine: bool = True
    ) -> Any:
        """The heads' output for the ``k``-th call with signals. ``refine`` (a hybrid call:
        text + signal): for a tool the heads refine, the signal is a gated residual on the text
        call's own prompt — segment's on the box of the object the call names (without an
        object index it stays the whole prompt: the detector missed the referent, the words
        alone resolve nothing), edit's on its description's tokens. ``refine=False``: the
        signal alone (the signal-only ablation)."""
        heads = heads or self.heads
        inputs = self.signal_inputs(decoded, k)
        if refine and call.tool in heads.refine_out:
            anchor = self.anchor_of(call, decoded) if call.tool in heads.box_code else None
            if anchor is not None or call.tool not in heads.box_code:
                return heads(call.tool, **inputs, refine=True, anchor=anchor)
        return heads(call.tool, **inputs)

    def attach_signals(
        self, reply: Reply, decoded: Decoded, heads: Any = None, refine: bool = True
    ) -> None:
        """Project each call's ``<sig_k>`` states (with the request/call states and the image's
        patch features) through its tool's signal head into ``call.signal`` (``[K, D]``;
        :meth:`signal_for`). A tool whose spec asks for a signal the heads have no head for (a
        plugin installed after they were trained) keeps its text call alone."""
        heads = heads or self.heads
        k = 0
        for call in reply.calls:
            if self.registry.cls(call.tool).signal is None:
                continue
            if k >= len(decoded.signal_hidden):
                raise ValueError(f"the call to {call.tool!r} came without its signal tokens")
            if call.tool in heads.tool_names:
                call.signal = self.signal_for(call, decoded, k, heads, refine).signal[0]
            k += 1

    def route_item(self, item: Any, **kw: Any) -> tuple[Reply, Decoded]:
        """Route a :class:`~switchboard.router.data.Item`."""
        regions = [Region.of(*m.shape, mask=m) for m in item.regions]
        return self.route(
            item.messages, item.images, regions, item.frame_index, objects=item.objects, **kw
        )


@dataclass
class _Route:
    """One route asked of :meth:`Router.route`: its request, then its outcome."""

    messages: list[dict[str, str]]
    images: list[np.ndarray]
    regions: list[Region] | None
    frame_index: list[int | None] | None
    with_signals: bool
    max_new_tokens: int
    objects: list[Any] | None
    kind: str = "none"
    ids: Any = None
    features: torch.Tensor | None = None
    decoded: Decoded | None = None
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)
