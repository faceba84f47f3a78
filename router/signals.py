"""Signal heads: the router's hidden states → each specialist's conditioning space.

After a call the router writes ``<sig_0> … <sig_{K-1}>`` (K from the called tool's
:class:`~switchboard.core.SignalSpec`). Their last-layer hidden states ``[K, d_llm]`` go through
:class:`SignalHeads` into ``[K, D]`` tensors the specialist takes as ``signal=``:

- a shared **trunk**, a small query transformer: the K hidden states (projected, plus a learned
  position per token) attend to each other and to a memory of (a) the router's last hidden
  states over the request and the call it wrote (from the user's words after the media up to
  the ``<sig_k>``) and (b) its visual memory — the vision tower's patch features of the image
  the call is about (a learned null token when there is none). The text states say *which*
  object ("the circle left of the star", as the router read and wrote it), the patches say
  *where*, at full grid resolution, which the LLM's pooled image tokens (8x8) cannot. The
  ``<sig_k>`` states alone proved nearly empty with the LLM frozen (a linear probe of the
  referent's box from them did worse than the mean box): the last layer at a position after
  ``</call>`` is shaped for predicting the next token, not for describing the referent;
- the **synergy split**: each trunk feature is projected into a task-invariant half (shared by
  every tool) and a task-specific half (one projection per tool); each tool's **output head**
  (an MLP) sees both halves;
- a **task discriminator** on the invariant half, trained through a gradient-reversal layer:
  the discriminator learns to tell the tools apart while the trunk learns to make that
  impossible, so what the invariant half holds (which object, where) serves every tool. The
  weight is configurable and ``synergy=False`` turns it off (the ablation keeps the same
  architecture, only the adversarial loss is gone);
- a **pointer**: the trunk's pooled query against the patches gives logits over the grid,
  trained towards the referent's share of each patch (segment, track); the attended patch
  feature and the soft location (Fourier features) reach every output head — the heads get
  *where* explicitly instead of having to find it through attention alone (which learnt far
  slower on the same data);
- the pointer's logits over the detected objects come from the **modular pointer**
  (:class:`ReferPointer`: subject, relation and order modules over the words alone), the
  patches keep the plain query (they serve when the detector missed the referent);
- a grounding read-out (normalized XYXY of the referent) from the trunk, an auxiliary loss
  (segment and track; not used at run time).

Saved beside the router as ``signals.json`` (config) and ``signals.safetensors``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

SIGNALS_CONFIG = "signals.json"
SIGNALS_WEIGHTS = "signals.safetensors"
BLOB_FRACTION = 0.35  # a committed blob's patches score at least this share of its top patch
FOURIER = 32  # frequencies of the pointer's location features
CODE_FOURIER = 64  # frequencies of the location code's box features (scale 2: SAM's range)


@dataclass
class SignalConfig:
    tools: dict[str, tuple[int, int]] = field(default_factory=dict)  # tool → (K, D)
    llm_dim: int = 576
    vision_dim: int = 192
    grid: int = 16
    width: int = 256
    depth: int = 2
    heads: int = 4
    max_tokens: int = 16
    fusion_depth: int = 2  # self-attention layers over the request/call words and the objects
    max_text: int = 128  # learned positions of the words (later ones share the last)
    num_classes: int = 8  # the object memory's detector classes
    detector: str = "detect-tiny"  # the object memory's detector (a models_dir folder or path)
    # Tools whose signal lives in SAM's prompt space: their signal adds a location code of the
    # box the pointer chose (trained on random boxes against SAM's own box tokens).
    located: tuple[str, ...] = ("segment", "track")
    # Tools whose signal can refine the text call's own prompt (a gated residual; see
    # SignalHeads.refine_out): segment (SAM's box tokens) and edit (the description's tokens).
    # Track's text call picks a track by its box: its signal serves when there is no box.
    refined: tuple[str, ...] = ("segment", "edit")
    # Score the objects with the modular pointer (ReferPointer) instead of one query against
    # every slot (the patches keep the plain query: they serve when the detector missed).
    refer: bool = True
    # The modular pointer's subject phrase also scores the patches (its own key on them), so
    # a referent the detector missed is found by the same reading of the words that finds
    # detected ones, and patches and objects compete on one scale. Heads saved before it: off.
    patch_subject: bool = True
    # Without the text call's box, the location code reads one committed box, not the
    # pointer's soft average (a box around neither of two candidates): the blob of patches
    # the subject phrase scores highest (SignalHeads.committed_box). Heads saved before: off.
    commit_box: bool = True
    synergy: bool = True  # train the task discriminator adversarially (off = the ablation)
    synergy_weight: float = 0.1  # weight of the discriminator loss
    grl_lambda: float = 1.0  # gradient-reversal strength (its maximum when ramped)
    grl_ramp: bool = True  # DANN's schedule: 0 at the start of training, up to grl_lambda

    @classmethod
    def from_registry(cls, registry: Any, **kw: Any) -> SignalConfig:
        """One head per registered tool that declares a signal."""
        tools = {}
        for name in registry.names():
            spec = registry.cls(name).signal
            if spec is not None:
                tools[name] = (spec.num_tokens, spec.dim)
        return cls(tools=tools, **kw)


class GradReverse(torch.autograd.Function):
    """Identity forward; the gradient times ``-lambda`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    return GradReverse.apply(x, lam)


@dataclass
class SignalOutput:
    """Per item: the tool's signal ``[B, K, D]``, the invariant half pooled ``[B, w/2]``, the
    discriminator's logits ``[B, tools]``, the grounding read-out ``[B, 4]`` (0..1 XYXY: the
    pointer's box with an image), the pointer's logits over the patches then the objects
    ``[B, g² + M]`` (with an image), the modular pointer's module weights ``[B, 3]`` (with an
    image, objects and words), the subject phrase's logits over the patches alone
    ``[B, g²]`` (with ``patch_subject``), and the box the location code read ``[B, 4]``
    (:attr:`SignalConfig.commit_box`; else ``box``)."""

    signal: torch.Tensor
    invariant: torch.Tensor
    task_logits: torch.Tensor
    box: torch.Tensor
    pointer: torch.Tensor | None = None
    modules: torch.Tensor | None = None  # the modular pointer's weights [B, 3] (REFER_KINDS)
    patches: torch.Tensor | None = None  # the subject phrase's patch logits [B, g²]
    committed: torch.Tensor | None = None  # the box the location code read [B, 4]


class RelationLayer(nn.Module):
    """Pairwise relations between objects (a relation network, Santoro et al. 2017): each
    object adds the sum over the other objects of an MLP of both features and their relative
    geometry (centre offsets, log size ratios). Sums can count ("the second square from the
    top": how many of the named squares lie above) and compare ("left of the star"), which
    softmax attention over a handful of tokens does poorly."""

    def __init__(self, w: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(w)
        self.edge = nn.Sequential(nn.Linear(2 * w + 4, w), nn.GELU(), nn.Linear(w, w))
        self.out = nn.Linear(w, w)

    @staticmethod
    def geometry(boxes: torch.Tensor) -> torch.Tensor:
        """``[B, M, 4]`` XYXY → ``[B, M, M, 4]``: centre offsets (j − i) and log size ratios."""
        c = (boxes[..., :2] + boxes[..., 2:]) / 2
        size = (boxes[..., 2:] - boxes[..., :2]).clamp_min(1e-3).log()
        return torch.cat([c[:, None] - c[:, :, None], size[:, None] - size[:, :, None]], -1)

    def forward(self, x: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, M, w]``, ``boxes`` ``[B, M, 4]``, ``valid`` ``[B, M]`` → ``[B, M, w]``."""
        h = self.norm(x)
        m = h.shape[1]
        pair = torch.cat(
            [
                h[:, :, None].expand(-1, -1, m, -1),
                h[:, None].expand(-1, m, -1, -1),
                4 * self.geometry(boxes),
            ],
            -1,
        )
        keep = valid[:, None, :] & ~torch.eye(m, dtype=torch.bool, device=x.device)
        e = (self.edge(pair) * keep[..., None]).sum(2)
        return x + self.out(e) * valid[..., None]


REFER_KINDS = ("attribute", "relational", "ordinal")  # the modules' weights, in this order
ORDER_SIDES = 4  # from the left, right, top, bottom
ORDER_RANKS = 8  # first … eighth


class ReferPointer(nn.Module):
    """Modular scores of the objects for a referring expression (after MAttNet, Yu et al. 2018):
    the words are read into four phrases by attention (the **subject** — what is pointed at —,
    an **anchor**, a **relation**, an **order**) and module weights (attribute only, relational,
    ordinal), then

    - ``subject_i = <subject, key(object_i)>``: does object i fit the named shape/colour/size;
    - ``relation_i = log Σ_j σ(<anchor, key_j>) σ(<relation, geo(box_i, box_j)>)``: is there an
      anchor object the relation holds to ("the circle *left of the star*");
    - ``order_i = log Σ_{side,rank} π(side, rank) exp(-(count_i(side) - rank)² / 2σ²)`` with
      ``count_i(side) = Σ_{j≠i} σ(subject_j) [j lies before i from that side]`` (soft, on the
      box centres): how many of the named objects come before it ("the *second* square *from
      the top*");

    and ``logit_i = subject_i + w_rel relation_i + w_ord order_i``. The counting and comparing
    are written out; what is learnt is reading the words and matching objects to them. The
    unstructured pointer (one query against all slots) learnt attribute expressions but stayed
    near 0.2 on relational and ordinal ones with ~1400 examples of each (docs/signals.md)."""

    def __init__(
        self, w: int, tau: float = 0.02, sigma: float = 0.5, patches: bool = False
    ) -> None:
        super().__init__()
        self.attend = nn.Linear(w, 4)  # word attention logits, one column per phrase
        self.phrase = nn.Linear(w, 4 * w)  # (applied per phrase: its own block)
        self.module_weights = nn.Linear(w, 3)
        self.key = nn.Linear(w, w)
        self.geo = nn.Sequential(nn.Linear(4, w), nn.GELU(), nn.Linear(w, w))
        self.order = nn.Linear(w, ORDER_SIDES * ORDER_RANKS)
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.tau, self.sigma = tau, sigma
        # Patches scored by the subject phrase (``patch_subject``): their own key, and a bias
        # that starts them below the objects (most referents are detected).
        self.patch_key = nn.Linear(w, w) if patches else None
        self.patch_bias = nn.Parameter(torch.tensor(-2.0)) if patches else None

    @staticmethod
    def before(boxes: torch.Tensor) -> torch.Tensor:
        """``[B, M, M, 4]``: centre differences ``(i − j)`` seen from the left, right, top and
        bottom (positive when object j comes before object i from that side)."""
        c = (boxes[..., :2] + boxes[..., 2:]) / 2
        d = c[:, :, None] - c[:, None]  # [B, i, j, 2]
        return torch.stack([d[..., 0], -d[..., 0], d[..., 1], -d[..., 1]], -1)

    def forward(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        objects: torch.Tensor,
        boxes: torch.Tensor,
        valid: torch.Tensor,
        patches: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``text`` ``[B, L, w]`` (mask ``[B, L]``), ``objects`` ``[B, M, w]``, ``boxes``
        ``[B, M, 4]`` (normalized XYXY), ``valid`` ``[B, M]`` → logits ``[B, M]``, the module
        weights ``[B, 3]`` (:data:`REFER_KINDS`) and, given ``patches`` ``[B, P, w]`` and a
        patch key, the patches' subject logits ``[B, P]`` on the objects' scale (else None)."""
        b, m, w = objects.shape
        att = self.attend(text).masked_fill(~text_mask[..., None], -1e4).softmax(1)  # [B,L,4]
        read = att.transpose(1, 2) @ text  # [B, 4, w]
        blocks = self.phrase.weight.view(4, w, w)
        bias = self.phrase.bias.view(4, w)
        subj, anchor, rel, order = (torch.einsum("bpw,pvw->bpv", read, blocks) + bias).unbind(1)
        pooled = (text * text_mask[..., None]).sum(1) / text_mask.sum(1, keepdim=True).clamp_min(1)
        weights = self.module_weights(pooled).softmax(-1)  # [B, 3]: attribute, rel, ord
        key = self.key(objects)
        norm = w**0.5
        s_subj = (key @ subj[..., None])[..., 0] / norm  # [B, M]
        s_anchor = (key @ anchor[..., None])[..., 0] / norm
        pair_ok = valid[:, None, :] & ~torch.eye(m, dtype=torch.bool, device=objects.device)
        g = self.geo(4 * RelationLayer.geometry(boxes))  # [B, i, j, w]
        s_rel = (g @ rel[:, None, :, None])[..., 0] / norm  # [B, i, j]
        rel_i = (
            (F.logsigmoid(s_anchor)[:, None, :] + F.logsigmoid(s_rel))
            .masked_fill(~pair_ok, -1e4)
            .logsumexp(-1)
            .clamp_min(-30.0)
        )
        member = torch.sigmoid(s_subj) * valid  # [B, M]
        ahead = torch.sigmoid(self.before(boxes) / self.tau) * pair_ok[..., None]  # [B,i,j,4]
        count = (ahead * member[:, None, :, None]).sum(2)  # [B, M, 4]
        log_pi = self.order(order).log_softmax(-1).view(b, 1, ORDER_SIDES, ORDER_RANKS)
        ranks = torch.arange(ORDER_RANKS, device=objects.device, dtype=objects.dtype)
        fit = -((count[..., None] - ranks) ** 2) / (2 * self.sigma**2)  # [B, M, 4, R]
        ord_i = (log_pi + fit).flatten(2).logsumexp(-1)
        logits = s_subj + weights[:, 1:2] * rel_i + weights[:, 2:3] * ord_i
        patch_logits = None
        if patches is not None and self.patch_key is not None:
            s_patch = (self.patch_key(patches) @ subj[..., None])[..., 0] / norm
            patch_logits = self.scale * (s_patch + self.patch_bias)
        return (self.scale * logits).masked_fill(~valid, -1e4), weights, patch_logits


def _layer(w: int, heads: int, decoder: bool) -> nn.Module:
    cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    return cls(w, heads, 2 * w, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)


@dataclass
class _Part:
    """Rows of the signal heads' fused memory ``[B, n, w]``, where they are real ``[B, n]``,
    and a side product (the words' own reading; the objects' rows before the patches)."""

    rows: torch.Tensor
    valid: torch.Tensor
    extra: torch.Tensor | None = None


@dataclass
class _Pointed:
    """The pointer's outcome: the box pointed at ``[B, 4]``, what is read there ``[B, w]``,
    the logits over the patches then the objects, the module weights, the patch logits, and the
    one box the pointer commits to (:meth:`SignalHeads.committed_box`; ``box`` without it)."""

    box: torch.Tensor
    where: torch.Tensor
    pointer: torch.Tensor | None = None
    modules: torch.Tensor | None = None
    patches: torch.Tensor | None = None
    committed: torch.Tensor | None = None

    @property
    def located(self) -> torch.Tensor:
        """The box the location code reads: the committed one, else the soft one."""
        return self.box if self.committed is None else self.committed


class SignalHeads(nn.Module):
    def __init__(self, config: SignalConfig) -> None:
        # Long on purpose: the heads' modules declared in the order forward reads them, each
        # with why it is there; a checkpoint's names are these attributes.
        super().__init__()
        from .objects import object_dim

        self.config = c = config
        if not c.tools:
            raise ValueError("no tool declares a signal: nothing for signal heads to serve")
        self.tool_names = sorted(c.tools)
        w, half = c.width, c.width // 2
        self.in_proj = nn.Linear(c.llm_dim, w)
        self.query_pos = nn.Parameter(torch.randn(c.max_tokens, w) * 0.02)
        self.mem_proj = nn.Linear(c.vision_dim, w)
        self.mem_pos = nn.Parameter(torch.randn(c.grid * c.grid, w) * 0.02)
        self.null_memory = nn.Parameter(torch.randn(1, w) * 0.02)
        self.text_proj = nn.Linear(c.llm_dim, w)  # last-layer states of the request and call
        self.word_proj = nn.Linear(c.llm_dim, w)  # layer-0 states (token embeddings), same span
        # Token embeddings carry no order ("the circle left of the star" vs "the star left of
        # the circle"): the words get a learned position in the span.
        self.text_pos = nn.Parameter(torch.randn(c.max_text, w) * 0.02)
        self.kind_emb = nn.Parameter(torch.randn(3, w) * 0.02)  # patch, text, object
        self.register_buffer("fourier", torch.randn(2, FOURIER) * 6.0, persistent=True)
        self.obj_in = nn.Sequential(
            nn.Linear(object_dim(c.num_classes) + 4 * FOURIER, w), nn.GELU(), nn.Linear(w, w)
        )
        self.fusion = nn.ModuleList(_layer(w, c.heads, False) for _ in range(c.fusion_depth))
        # After each fusion layer but the last, the objects relate to one another.
        self.relations = nn.ModuleList(RelationLayer(w) for _ in range(c.fusion_depth - 1))
        self.layers = nn.ModuleList(_layer(w, c.heads, True) for _ in range(c.depth))
        self.norm = nn.LayerNorm(w)
        self.invariant = nn.Linear(w, half)
        self.specific = nn.ModuleDict({t: nn.Linear(w, half) for t in self.tool_names})
        # The pointer: the trunk's pooled query against the patches and the objects; the box
        # it points at (Fourier features of both corners) and the attended feature reach
        # every head.
        self.point_q = nn.Linear(w, w)
        self.point_k = nn.Linear(w, w)
        self.where = nn.Linear(w + 4 * FOURIER, w)
        self.refer = ReferPointer(w, patches=c.patch_subject) if c.refer else None
        # The modular pointer reads the words alone (token embeddings and positions through
        # its own encoder): the last-layer states have seen the image, and with them it
        # memorized which object each training request meant (0.9 on training items, 0.4–0.6
        # held out on relational and ordinal ones) instead of learning its modules.
        self.refer_text = nn.ModuleList(
            _layer(w, c.heads, False) for _ in range(2 if c.refer else 0)
        )
        self.out = nn.ModuleDict(
            {
                t: nn.Sequential(nn.Linear(2 * half + w, w), nn.GELU(), nn.Linear(w, d))
                for t, (_, d) in c.tools.items()
            }
        )
        # Refinement (text + signal): when the text call already names the object (its box, or
        # the description an edit paints), the signal is a residual on the specialist's own
        # prompt — added to SAM's box tokens, to the edit's text tokens — scaled by a gate per
        # tool that starts at zero, so untrained heads leave the text path exactly as it is.
        self.refine_out = nn.ModuleDict(
            {
                t: nn.Sequential(nn.Linear(2 * half + w, half), nn.GELU(), nn.Linear(half, d))
                for t, (_, d) in c.tools.items()
                if t in c.refined
            }
        )
        self.refine_gate = nn.ParameterDict(
            {t: nn.Parameter(torch.zeros(())) for t in c.tools if t in c.refined}
        )
        self.discriminator = nn.Sequential(
            nn.Linear(half, half), nn.GELU(), nn.Linear(half, len(self.tool_names))
        )
        self.box_head = nn.Linear(w, 4)
        # The location code: the pointed box → K tokens of SAM's prompt space (MLP on Fourier
        # features of both corners). Random boxes can teach it all it needs (see
        # train_signals.signal_losses' "code" term): a box is a box whatever the request.
        self.register_buffer("code_fourier", torch.randn(2, CODE_FOURIER) * 2.0, persistent=True)
        self.box_code = nn.ModuleDict(
            {
                t: nn.Sequential(
                    nn.Linear(4 * CODE_FOURIER, w),
                    nn.GELU(),
                    nn.Linear(w, w),
                    nn.GELU(),
                    nn.Linear(w, c.tools[t][0] * c.tools[t][1]),
                )
                for t in c.located
                if t in c.tools
            }
        )
        self.progress = 1.0  # share of training done (the trainer sets it; drives the GRL ramp)

    def spec(self, tool: str) -> tuple[int, int]:
        if tool not in self.config.tools:
            raise KeyError(f"no signal head for tool {tool!r}; heads: {self.tool_names}")
        return self.config.tools[tool]

    @property
    def obj_dim(self) -> int:
        from .objects import object_dim

        return object_dim(self.config.num_classes)

    def task_index(self, tool: str) -> int:
        return self.tool_names.index(tool)

    def box_features(self, box: torch.Tensor) -> torch.Tensor:
        """Fourier features of both corners of normalized XYXY boxes ``[..., 4]``."""
        proj = 2 * torch.pi * box.unflatten(-1, (2, 2)) @ self.fourier.to(box)  # [..., 2, F]
        return torch.cat([proj.sin(), proj.cos()], dim=-1).flatten(-2)

    def forward(
        self,
        tool: str,
        hidden: torch.Tensor,
        memory: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        words: torch.Tensor | None = None,
        objects: torch.Tensor | None = None,
        objects_mask: torch.Tensor | None = None,
        refine: bool = False,
        anchor: torch.Tensor | None = None,
    ) -> SignalOutput:
        """``hidden`` ``[B, K, d_llm]`` (the ``<sig_k>`` states); ``memory`` ``[B, g², dv]``
        (the vision tower's patch features) or None; ``text`` ``[B, L, d_llm]`` (the router's
        last-layer states over the request and call; ``text_mask`` ``[B, L]`` True where real)
        and ``words`` (its layer-0 states over the same span) or None; ``objects``
        ``[B, M, object_dim]`` (the object memory, :mod:`~switchboard.router.objects`;
        ``objects_mask`` ``[B, M]``) or None → :class:`SignalOutput`.

        ``refine``: the text call's own prompt is there and the signal is a gated residual on
        it (:attr:`refine_out`; tools in ``config.refined``); ``anchor`` ``[B, 4]`` (normalized
        XYXY) is the box the text call names (segment): the heads read that object instead of
        the one their pointer would choose."""
        if refine and tool not in self.refine_out:
            raise ValueError(f"{tool!r} has no refining head (refined: {self.config.refined})")
        k, _ = self.spec(tool)
        if hidden.dim() == 2:
            hidden = hidden[None]
        if hidden.shape[1] != k:
            raise ValueError(f"{tool!r} takes {k} signal tokens, got {hidden.shape[1]}")
        q = self.in_proj(hidden.to(self.in_proj.weight.dtype)) + self.query_pos[:k]
        b = q.shape[0]
        if memory is not None and memory.dim() == 2:
            memory = memory[None]
        if objects is not None:
            objects = (objects[None] if objects.dim() == 2 else objects).to(q.dtype)
        if memory is None:
            objects = None  # the objects are read with their patches: none without an image
        words_part = self._words(text, text_mask, words)
        objects_part = self._objects(objects, objects_mask, memory)
        mem, pad = self._memory(b, memory, words_part, objects_part, objects)
        for layer in self.layers:
            q = layer(q, mem, memory_key_padding_mask=pad)
        f = self.norm(q)
        point = self._point(f, mem, pad, memory, objects, words_part, objects_part, anchor)
        inv = self.invariant(f)
        where = point.where[:, None].expand(-1, k, -1)
        both = torch.cat([self.specific[tool](f), inv, where], dim=-1)
        if refine:
            signal = torch.tanh(self.refine_gate[tool]) * self.refine_out[tool](both)
        else:
            signal = self.out[tool](both)
            if tool in self.box_code:
                signal = signal + self.located_signal(tool, point.located)
        pooled = inv.mean(1)
        logits = self.discriminator(grad_reverse(pooled, self.grl_strength()))
        return SignalOutput(
            signal,
            pooled,
            logits,
            point.box,
            point.pointer,
            point.modules,
            point.patches,
            point.located,
        )

    def _words(
        self, text: torch.Tensor | None, text_mask: torch.Tensor | None, words: torch.Tensor | None
    ) -> _Part | None:
        """The request/call words as rows of the fused memory, and the modular pointer's own
        reading of them (token embeddings and positions alone; see :attr:`refer_text`)."""
        if text is None:
            return None
        dtype, dev = self.in_proj.weight.dtype, text.device
        if text.dim() == 2:
            text = text[None]
        t = self.text_proj(text.to(dtype))
        if words is not None:
            words = words[None] if words.dim() == 2 else words
            t = t + self.word_proj(words.to(dtype))
        pos = torch.arange(t.shape[1], device=dev).clamp_max(self.config.max_text - 1)
        valid = (
            torch.ones(text.shape[:2], dtype=torch.bool, device=dev)
            if text_mask is None
            else text_mask.to(dev).bool()
        )
        reading = None
        if words is not None and self.refer is not None:
            reading = self.word_proj(words.to(dtype)) + self.text_pos[pos]
            for layer in self.refer_text:
                reading = layer(reading, src_key_padding_mask=~valid)
        return _Part(t + self.text_pos[pos] + self.kind_emb[1], valid, reading)

    def _objects(
        self,
        objects: torch.Tensor | None,
        objects_mask: torch.Tensor | None,
        memory: torch.Tensor | None,
    ) -> _Part | None:
        """The detected objects as rows of the fused memory (their detector features and box,
        plus the patches under the box), and those rows before the patches (``extra``: what the
        detector saw, which the modular pointer scores)."""
        if objects is None:
            return None
        dtype = self.in_proj.weight.dtype
        valid = (
            torch.ones(objects.shape[:2], dtype=torch.bool, device=objects.device)
            if objects_mask is None
            else objects_mask.to(objects.device).bool()
        )
        rows = self.obj_in(torch.cat([objects, self.box_features(objects[..., :4])], -1))
        under = self.roi_weights(objects[..., :4], memory.shape[1]) @ self.mem_proj(
            memory.to(dtype)
        )
        return _Part(rows + under + self.kind_emb[2], valid, rows)

    def _memory(
        self,
        b: int,
        memory: torch.Tensor | None,
        words: _Part | None,
        detected: _Part | None,
        objects: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the signal queries attend to ``[B, g² + L + M, w]`` and its padding mask: the
        patches (a learnt null slot without an image), then the words and the objects fused —
        attending to each other (which object the words mean), the objects relating to one
        another after each fusion layer but the last."""
        dtype = self.in_proj.weight.dtype
        if memory is None:
            first = self.null_memory.expand(b, 1, -1) + self.kind_emb[0]
        else:
            vis = self.mem_proj(memory.to(dtype)) + self.mem_pos[: memory.shape[1]]
            first = vis + self.kind_emb[0]
        mem_parts = [first]
        pad_parts = [torch.zeros(b, first.shape[1], dtype=torch.bool, device=first.device)]
        fused = [p for p in (words, detected) if p is not None]
        if fused:
            x = torch.cat([p.rows for p in fused], 1)
            valid = torch.cat([p.valid for p in fused], 1)
            n_obj = 0 if detected is None else detected.rows.shape[1]
            for i, layer in enumerate(self.fusion):
                x = layer(x, src_key_padding_mask=~valid)
                if n_obj and i < len(self.relations):
                    rel = self.relations[i](x[:, -n_obj:], objects[..., :4], valid[:, -n_obj:])
                    x = torch.cat([x[:, :-n_obj], rel], 1)
            mem_parts.append(x)
            pad_parts.append(~valid)
        return torch.cat(mem_parts, 1), torch.cat(pad_parts, 1)

    def _point(
        self,
        f: torch.Tensor,
        mem: torch.Tensor,
        pad: torch.Tensor,
        memory: torch.Tensor | None,
        objects: torch.Tensor | None,
        words: _Part | None,
        detected: _Part | None,
        anchor: torch.Tensor | None,
    ) -> _Pointed:
        """The pointer over the patches and the objects, the box it points at (the anchor's
        when the text call names one) and what it reads there (``where``)."""
        b, dev = f.shape[0], f.device
        box = torch.sigmoid(self.box_head(f.mean(1)))
        where = torch.zeros(b, self.where.out_features, device=dev, dtype=f.dtype)
        if memory is None:
            return _Pointed(box, where)
        g2 = memory.shape[1]
        n_obj = 0 if detected is None else detected.rows.shape[1]
        n_text = 0 if words is None else words.rows.shape[1]
        slots = mem[:, :g2]
        boxes = self.cell_boxes(g2).to(slots)[None].expand(b, -1, -1)
        slot_ok = torch.ones(b, g2, dtype=torch.bool, device=dev)
        if n_obj:
            slots = torch.cat([slots, mem[:, -n_obj:]], 1)
            boxes = torch.cat([boxes, objects[..., :4]], 1)
            slot_ok = torch.cat([slot_ok, ~pad[:, -n_obj:]], 1)
        pointer = (self.point_q(f.mean(1))[:, None] * self.point_k(slots)).sum(-1)
        pointer = (pointer / slots.shape[-1] ** 0.5).masked_fill(~slot_ok, -1e4)
        modules = on_patches = None
        if n_obj and words is not None and words.extra is not None:
            # The words' own reading and the objects' rows (what the detector saw): read
            # after the fusion, the words held the objects too, a shortcut the pointer
            # learnt instead of its modules (their weights stayed at "attribute" for every
            # expression).
            scores, modules, on_patches = self.refer(
                words.extra,
                ~pad[:, g2 : g2 + n_text],
                detected.extra,
                objects[..., :4],
                slot_ok[:, g2:],
                patches=slots[:, :g2],
            )
            patch_scores = pointer[:, :g2]
            if on_patches is not None:
                patch_scores = patch_scores + on_patches
            pointer = torch.cat([patch_scores, scores], 1)
        attn = pointer.softmax(-1)
        if anchor is not None:
            attn = self.anchor_weights(anchor.to(boxes), boxes, slot_ok, g2)
        if self.config.patch_subject:
            box = self.pointed_box(attn, boxes, g2)
        else:
            box = (attn[:, None] @ boxes)[:, 0]  # [B, 4]: the box pointed at (soft)
        committed = None
        if anchor is not None:
            box = anchor.to(box)
        elif self.config.commit_box and on_patches is not None:
            committed = self.committed_box(on_patches)
        where = self.where(
            torch.cat([(attn[:, None] @ slots)[:, 0], self.box_features(box)], dim=-1)
        )
        return _Pointed(box, where, pointer, modules, on_patches, committed)

    def located_signal(self, tool: str, box: torch.Tensor) -> torch.Tensor:
        """The location code of normalized XYXY boxes ``[B, 4]`` → ``[B, K, D]``."""
        k, d = self.spec(tool)
        proj = 2 * torch.pi * box.unflatten(-1, (2, 2)) @ self.code_fourier.to(box)
        feats = torch.cat([proj.sin(), proj.cos()], dim=-1).flatten(-2)
        return self.box_code[tool](feats).unflatten(-1, (k, d))

    def anchor_weights(
        self, anchor: torch.Tensor, boxes: torch.Tensor, slot_ok: torch.Tensor, g2: int
    ) -> torch.Tensor:
        """``[B, g² + M]`` weights that read the anchor: all on the detected object whose box
        matches it best (IoU ≥ :data:`MATCH_IOU`), else on the patches inside it."""
        from .objects import box_iou

        b = anchor.shape[0]
        w = torch.zeros(b, boxes.shape[1], dtype=boxes.dtype, device=boxes.device)
        w[:, :g2] = self.roi_weights(anchor[:, None], g2)[:, 0]
        if boxes.shape[1] > g2:
            iou = box_iou(boxes[:, g2:], anchor).masked_fill(~slot_ok[:, g2:], 0.0)
            best, idx = iou.max(-1)
            hit = best >= MATCH_IOU
            obj = F.one_hot(idx, boxes.shape[1] - g2).to(w)
            w = torch.where(hit[:, None], torch.cat([torch.zeros_like(w[:, :g2]), obj], 1), w)
        return w

    @staticmethod
    def roi_weights(boxes: torch.Tensor, n: int) -> torch.Tensor:
        """``[B, M, n]``: for each box, equal weights on the patches whose centres lie inside
        it (the patch holding its centre when none does, for boxes under one patch)."""
        c = SignalHeads.patch_centers(n).to(boxes)  # [n, 2]
        x, y = c[:, 0], c[:, 1]
        b = boxes[..., None, :]
        inside = (x >= b[..., 0]) & (x <= b[..., 2]) & (y >= b[..., 1]) & (y <= b[..., 3])
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        nearest = F.one_hot(
            torch.cdist(centre, c[None].expand(boxes.shape[0], -1, -1)).argmin(-1), n
        ).bool()
        w = torch.where(inside.any(-1, keepdim=True), inside, nearest).to(boxes)
        return w / w.sum(-1, keepdim=True).clamp_min(1.0)

    @staticmethod
    def pointed_box(attn: torch.Tensor, boxes: torch.Tensor, g2: int) -> torch.Tensor:
        """The box ``[B, 4]`` the pointer's weights ``attn`` ``[B, g² + M]`` point at: the
        objects' boxes weighted by their share, plus the patches' share times the box their
        weights spread over: the weighted centre ± √(3 var + (cell / 2)²) per axis, the exact
        half-width of k cells weighted evenly (the weighted mean of the cells' boxes would be
        one cell wide, and an object spans several)."""
        p = attn[:, :g2]
        mass = p.sum(-1, keepdim=True)
        q = p / mass.clamp_min(1e-6)
        cells = boxes[:, :g2]
        centres = (cells[..., :2] + cells[..., 2:]) / 2  # [B, g², 2]
        mean = (q[..., None] * centres).sum(1)
        var = (q[..., None] * (centres - mean[:, None]) ** 2).sum(1)
        half = (3 * var + (0.5 / int(round(g2**0.5))) ** 2).sqrt()
        spread = torch.cat([mean - half, mean + half], -1).clamp(0.0, 1.0)
        objects = (attn[:, None, g2:] @ boxes[:, g2:])[:, 0]
        return mass * spread + objects

    @staticmethod
    @torch.no_grad()
    def committed_box(subject: torch.Tensor) -> torch.Tensor:
        """The one box ``[B, 4]`` the subject phrase's patch logits ``subject`` ``[B, g²]``
        commit to: the union of the cells of the top patch and the 8-connected patches around
        it whose probability is at least :data:`BLOB_FRACTION` of the top one's. Not
        differentiable: the soft :meth:`pointed_box` carries the box loss. Why this blob and
        not the soft box or the pointer's own choice: docs/signals.md, "The committed box"."""
        b, g2 = subject.shape
        g = int(round(g2**0.5))
        q = subject.float().softmax(-1)
        top = q.argmax(-1)
        on = (q >= BLOB_FRACTION * q.gather(1, top[:, None])).view(b, 1, g, g).float()
        blob = F.one_hot(top, g2).float().view(b, 1, g, g)
        for _ in range(g2):  # grow the top patch inside ``on`` until it stops changing
            grown = F.max_pool2d(blob, 3, stride=1, padding=1) * on
            if torch.equal(grown, blob):
                break
            blob = grown
        cells = SignalHeads.cell_boxes(g2).to(q)[None]
        inside = (blob.view(b, g2) > 0)[..., None]
        lo = cells[..., :2].masked_fill(~inside, 2.0).amin(1)
        hi = cells[..., 2:].masked_fill(~inside, -1.0).amax(1)
        return torch.cat([lo, hi], -1).to(subject.dtype)

    @staticmethod
    def cell_boxes(n: int) -> torch.Tensor:
        """Normalized XYXY boxes of an ``sqrt(n)`` × ``sqrt(n)`` patch grid, row-major."""
        g = int(round(n**0.5))
        c = SignalHeads.patch_centers(n)
        return torch.cat([c - 0.5 / g, c + 0.5 / g], dim=-1)

    def grl_strength(self) -> float:
        """The reversal's ``lambda``: with the ramp, DANN's ``2 / (1 + exp(-10 p)) - 1`` of
        the way ``p`` through training (the adversary starts weak while the trunk still
        learns what to carry; at ``lambda = 1`` from the first step the discriminator's loss
        swung up to 5.6 and the heads learnt less — see docs/signals.md)."""
        lam = self.config.grl_lambda
        if not self.config.grl_ramp:
            return lam
        return lam * (2.0 / (1.0 + math.exp(-10.0 * self.progress)) - 1.0)

    @staticmethod
    def patch_centers(n: int) -> torch.Tensor:
        """Normalized ``(x, y)`` centres of an ``sqrt(n)`` × ``sqrt(n)`` patch grid, row-major."""
        g = int(round(n**0.5))
        c = (torch.arange(g, dtype=torch.float32) + 0.5) / g
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        return torch.stack([xx.flatten(), yy.flatten()], dim=-1)

    # -- files -------------------------------------------------------------------------------
    def save(self, folder: str | Path, fp16: bool = False, base: str | Path | None = None) -> None:
        """Config and weights into ``folder``; with ``base`` (a folder of heads the same start
        trained, e.g. the router folder beside an ablation in ``<router>/signals-nosynergy``),
        the tensors equal to base's are left out and :meth:`load` reads them from there."""
        from safetensors.torch import load_file, save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        raw = asdict(self.config)
        raw["tools"] = {t: list(v) for t, v in self.config.tools.items()}
        (folder / SIGNALS_CONFIG).write_text(json.dumps(raw, indent=2))
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        if fp16:
            state = {k: v.half() for k, v in state.items()}
        if base is not None and (Path(base) / SIGNALS_WEIGHTS).is_file():
            shared = load_file(str(Path(base) / SIGNALS_WEIGHTS))
            state = {
                k: v
                for k, v in state.items()
                if not (k in shared and shared[k].dtype == v.dtype and torch.equal(shared[k], v))
            }
        save_file(state, str(folder / SIGNALS_WEIGHTS), metadata={"format": "pt"})

    @classmethod
    def exists(cls, folder: str | Path) -> bool:
        return (Path(folder) / SIGNALS_CONFIG).is_file()

    @classmethod
    def load(cls, folder: str | Path) -> SignalHeads:
        from safetensors.torch import load_file

        folder = Path(folder)
        raw = json.loads((folder / SIGNALS_CONFIG).read_text())
        raw["tools"] = {t: tuple(v) for t, v in raw["tools"].items()}
        raw["located"] = tuple(raw.get("located", ()))
        raw["refined"] = tuple(raw.get("refined", ()))  # heads saved before refinement: none
        raw.setdefault("patch_subject", False)  # heads saved before the patches' subject score
        raw.setdefault("commit_box", False)  # heads saved before the committed box
        heads = cls(SignalConfig(**raw))
        state = load_file(str(folder / SIGNALS_WEIGHTS))
        if set(heads.state_dict()) - set(state) and (folder.parent / SIGNALS_WEIGHTS).is_file():
            # Saved with ``base``: the tensors shared with the heads one folder up are there.
            shared = load_file(str(folder.parent / SIGNALS_WEIGHTS))
            state = {**{k: v for k, v in shared.items() if k not in state}, **state}
        heads.load_state_dict({k: v.float() for k, v in state.items()})
        return heads.eval()


def text_span(ids: list[int], media_ids: set[int], end_of_turn: int, first_sig: int) -> slice:
    """Positions of the text the heads read: after the last media token (``<image>`` or
    ``<region>``) — or after the system turn when there is none — up to the first ``<sig_k>``."""
    media = [i for i, t in enumerate(ids[:first_sig]) if t in media_ids]
    if media:
        start = media[-1] + 1
    else:
        start = next((i + 1 for i, t in enumerate(ids[:first_sig]) if t == end_of_turn), 0)
    return slice(start, first_sig)


def router_text_span(router: Any, ids: list[int], first_sig: int) -> slice:
    """:func:`~switchboard.router.signals.text_span` with the router's token ids."""
    tok = router.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    end = end if isinstance(end, int) and end != tok.unk_token_id else tok.eos_token_id
    return text_span(ids, {router.image_id, router.region_id}, end, first_sig)


def pad_texts(texts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length ``[L_i, d]`` → ``[B, L, d]`` and a mask ``[B, L]`` (True = real)."""
    n = max(1, max(len(t) for t in texts))
    out = torch.zeros(len(texts), n, texts[0].shape[-1], dtype=texts[0].dtype)
    mask = torch.zeros(len(texts), n, dtype=torch.bool)
    for b, t in enumerate(texts):
        out[b, : len(t)], mask[b, : len(t)] = t, True
    return out, mask


# -- specialist-side losses ------------------------------------------------------------------
def dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mask loss per item ``[B]``: BCE plus soft Dice over ``[B, H, W]`` logits."""
    t = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean((-2, -1))
    p = torch.sigmoid(logits)
    inter = (p * t).sum((-2, -1))
    dice = 1 - (2 * inter + 1) / (p.sum((-2, -1)) + t.sum((-2, -1)) + 1)
    return bce + dice


def sam_signal_logits(sam: Any, embeddings: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """Low-resolution mask logits ``[B, h, w]`` of a SignalSam from image embeddings
    ``[B, C, g, g]`` and signal tokens ``[B, K, 256]`` alone (no point or box prompt)."""
    b = embeddings.shape[0]
    sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
    sparse = sam.sparse_with_signal(sparse.expand(b, -1, -1), signal)
    dense = dense.expand(b, -1, -1, -1)
    pe = sam.prompt_encoder.get_dense_pe()
    # The decoder repeats the image embedding per prompt; one prompt set per image here.
    logits = []
    for i in range(b):
        low, _ = sam.mask_decoder(
            image_embeddings=embeddings[i : i + 1],
            image_pe=pe,
            sparse_prompt_embeddings=sparse[i : i + 1],
            dense_prompt_embeddings=dense[i : i + 1],
            multimask_output=False,
        )
        logits.append(low[:, 0])
    return torch.cat(logits)


def sam_refine_logits(
    sam: Any, embeddings: torch.Tensor, boxes: torch.Tensor, residual: torch.Tensor
) -> torch.Tensor:
    """Low-resolution mask logits ``[B, h, w]`` from box prompts ``[B, 4]`` (normalized XYXY in
    SAM's padded square frame) refined by residual signal tokens ``[B, 2, 256]``
    (:meth:`~switchboard.specialists.sam.SignalSam.refine_sparse`)."""
    side = float(sam.image_encoder.img_size)
    logits = []
    for i in range(embeddings.shape[0]):
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes[i : i + 1] * side, masks=None)
        sparse = sam.refine_sparse(sparse, residual[i : i + 1])
        low, _ = sam.mask_decoder(
            image_embeddings=embeddings[i : i + 1],
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        logits.append(low[:, 0])
    return torch.cat(logits)


MATCH_IOU = 0.5  # a detection is the referent when its box overlaps the true box this much


def pointer_target(
    mask: torch.Tensor,
    grid_n: int,
    objects: torch.Tensor | None = None,
    objects_mask: torch.Tensor | None = None,
    box: torch.Tensor | None = None,
) -> torch.Tensor:
    """The pointer's target distribution ``[B, g² + M]``: all on the detection that matches the
    referent (box IoU ≥ :data:`MATCH_IOU`, the best one), else the referent's share of each
    patch (from the low-res mask ``[B, h, w]``, area-pooled to g×g) — when the detector
    missed it."""
    from .objects import box_iou

    g = int(round(grid_n**0.5))
    occ = F.adaptive_avg_pool2d(mask[:, None].float(), g).flatten(1)
    target = occ / occ.sum(-1, keepdim=True).clamp_min(1e-6)
    if objects is None or box is None:
        return target
    iou = box_iou(objects[..., :4].float(), box.float())
    if objects_mask is not None:
        iou = iou.masked_fill(~objects_mask.bool(), 0.0)
    best, idx = iou.max(-1)
    hit = best >= MATCH_IOU
    obj = F.one_hot(idx, objects.shape[1]).float() * hit[:, None]
    return torch.cat([target * ~hit[:, None], obj], dim=-1)


def pointer_loss(pointer: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per item ``[B]``: cross-entropy of the pointer's distribution to :func:`pointer_target`."""
    return -(target * pointer.log_softmax(-1)).sum(-1)


def random_boxes(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` normalized XYXY boxes, sides 0.03..0.53, anywhere in the image."""
    xy = torch.rand(n, 2, generator=generator)
    wh = 0.03 + 0.5 * torch.rand(n, 2, generator=generator)
    return torch.cat([xy * (1 - wh), xy * (1 - wh) + wh], dim=-1)


def prompt_loss(sam: Any, signal: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Per item ``[B]``: MSE between the signal as SAM reads it (``signal_in``) and SAM's own
    prompt tokens for the referent's box (normalized XYXY in SAM's padded square frame) — the
    signal starts as the best box prompt SAM knows and the mask loss refines it from there."""
    with torch.no_grad():
        side = float(sam.image_encoder.img_size)
        target, _ = sam.prompt_encoder(points=None, boxes=box.float() * side, masks=None)
    sig = sam.signal_in(signal.to(target.dtype))
    return (sig - target).pow(2).mean((-2, -1))


def edit_signal_loss(signal: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per item ``[B]``: MSE plus (1 - cosine) per token, to the text encoder's tokens."""
    mse = (signal - target).pow(2).mean((-2, -1))
    cos = 1 - F.cosine_similarity(signal, target, dim=-1).mean(-1)
    return mse + cos
