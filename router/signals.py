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
FOURIER = 32  # frequencies of the pointer's location features


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
    discriminator's logits ``[B, tools]`` and the grounding read-out ``[B, 4]`` (0..1 XYXY)."""

    signal: torch.Tensor
    invariant: torch.Tensor
    task_logits: torch.Tensor
    box: torch.Tensor
    pointer: torch.Tensor | None = None  # [B, grid²] logits over the patches (with an image)


class SignalHeads(nn.Module):
    def __init__(self, config: SignalConfig) -> None:
        super().__init__()
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
        self.text_proj = nn.Linear(c.llm_dim, w)
        self.kind_emb = nn.Parameter(torch.randn(2, w) * 0.02)  # vision, text
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(
                w,
                c.heads,
                2 * w,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )  # fmt: skip
            for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(w)
        self.invariant = nn.Linear(w, half)
        self.specific = nn.ModuleDict({t: nn.Linear(w, half) for t in self.tool_names})
        # The pointer: the trunk's pooled query against the patches → where the referent is;
        # its location (Fourier features) and the attended patch feature reach every head.
        self.point_q = nn.Linear(w, w)
        self.point_k = nn.Linear(w, w)
        self.register_buffer("fourier", torch.randn(2, FOURIER) * 6.0, persistent=True)
        self.where = nn.Linear(w + 2 * FOURIER, w)
        self.out = nn.ModuleDict(
            {
                t: nn.Sequential(nn.Linear(2 * half + w, w), nn.GELU(), nn.Linear(w, d))
                for t, (_, d) in c.tools.items()
            }
        )
        self.discriminator = nn.Sequential(
            nn.Linear(half, half), nn.GELU(), nn.Linear(half, len(self.tool_names))
        )
        self.box_head = nn.Linear(w, 4)
        self.progress = 1.0  # share of training done (the trainer sets it; drives the GRL ramp)

    def spec(self, tool: str) -> tuple[int, int]:
        if tool not in self.config.tools:
            raise KeyError(f"no signal head for tool {tool!r}; heads: {self.tool_names}")
        return self.config.tools[tool]

    def task_index(self, tool: str) -> int:
        return self.tool_names.index(tool)

    def forward(
        self,
        tool: str,
        hidden: torch.Tensor,
        memory: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> SignalOutput:
        """``hidden`` ``[B, K, d_llm]`` (the ``<sig_k>`` states), ``memory`` ``[B, grid², dv]``
        (the vision tower's patch features) or None, ``text`` ``[B, L, d_llm]`` (the router's
        states over the request and call; ``text_mask`` ``[B, L]`` True where real) or None
        → :class:`SignalOutput`."""
        k, _ = self.spec(tool)
        if hidden.dim() == 2:
            hidden = hidden[None]
        if hidden.shape[1] != k:
            raise ValueError(f"{tool!r} takes {k} signal tokens, got {hidden.shape[1]}")
        dtype = self.in_proj.weight.dtype
        q = self.in_proj(hidden.to(dtype)) + self.query_pos[:k]
        b = q.shape[0]
        if memory is None:
            mem = self.null_memory.expand(b, 1, -1)
        else:
            if memory.dim() == 2:
                memory = memory[None]
            mem = self.mem_proj(memory.to(dtype)) + self.mem_pos[: memory.shape[1]]
        mem = mem + self.kind_emb[0]
        pad = torch.zeros(b, mem.shape[1], dtype=torch.bool, device=mem.device)
        if text is not None:
            if text.dim() == 2:
                text = text[None]
            mem = torch.cat([mem, self.text_proj(text.to(dtype)) + self.kind_emb[1]], dim=1)
            valid = (
                torch.ones(text.shape[:2], dtype=torch.bool, device=mem.device)
                if text_mask is None
                else text_mask.to(mem.device).bool()
            )
            pad = torch.cat([pad, ~valid], dim=1)
        for layer in self.layers:
            q = layer(q, mem, memory_key_padding_mask=pad)
        f = self.norm(q)
        pointer, where = None, torch.zeros(b, self.where.out_features, device=f.device, dtype=dtype)
        if memory is not None:
            vis = mem[:, : memory.shape[1]]
            pointer = (self.point_q(f.mean(1))[:, None] * self.point_k(vis)).sum(-1)
            pointer = pointer / vis.shape[-1] ** 0.5
            attn = pointer.softmax(-1)
            loc = attn @ self.patch_centers(memory.shape[1]).to(attn)  # [B, 2], 0..1
            proj = 2 * torch.pi * loc @ self.fourier
            where = self.where(torch.cat([attn[:, None] @ vis, proj.sin()[:, None],
                                          proj.cos()[:, None]], dim=-1)[:, 0])  # fmt: skip
        inv = self.invariant(f)
        both = torch.cat([self.specific[tool](f), inv, where[:, None].expand(-1, k, -1)], dim=-1)
        signal = self.out[tool](both)
        pooled = inv.mean(1)
        logits = self.discriminator(grad_reverse(pooled, self.grl_strength()))
        box = torch.sigmoid(self.box_head(f.mean(1)))
        return SignalOutput(signal, pooled, logits, box, pointer)

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
    def save(self, folder: str | Path, fp16: bool = False) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        raw = asdict(self.config)
        raw["tools"] = {t: list(v) for t, v in self.config.tools.items()}
        (folder / SIGNALS_CONFIG).write_text(json.dumps(raw, indent=2))
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        if fp16:
            state = {k: v.half() for k, v in state.items()}
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
        heads = cls(SignalConfig(**raw))
        state = {k: v.float() for k, v in load_file(str(folder / SIGNALS_WEIGHTS)).items()}
        heads.load_state_dict(state)
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


def pointer_loss(pointer: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per item ``[B]``: cross-entropy of the pointer's patch distribution ``[B, g²]`` to the
    referent's share of each patch (from the low-res mask ``[B, h, w]``, area-pooled to g×g)."""
    g = int(round(pointer.shape[-1] ** 0.5))
    occ = F.adaptive_avg_pool2d(mask[:, None].float(), g).flatten(1)
    target = occ / occ.sum(-1, keepdim=True).clamp_min(1e-6)
    return -(target * pointer.log_softmax(-1)).sum(-1)


def edit_signal_loss(signal: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per item ``[B]``: MSE plus (1 - cosine) per token, to the text encoder's tokens."""
    mse = (signal - target).pow(2).mean((-2, -1))
    cos = 1 - F.cosine_similarity(signal, target, dim=-1).mean(-1)
    return mse + cos
