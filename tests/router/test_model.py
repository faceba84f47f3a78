"""The router model on a tiny random Llama: placeholders are filled in order, regions change the
embedding where they point, and the folder round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from switchboard.core.errors import InvalidInputError
from switchboard.router.codec import SPECIAL_TOKENS
from switchboard.router.model import Region, RouterConfig, RouterModel

WORDS = ["the", "a", "red", "blue", "circle", "square", "where", "is", "it", "what", "colour"]


def tiny_base():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return tok, LlamaForCausalLM(cfg)


CONFIG = RouterConfig(
    vit={"image_size": 64, "patch_size": 16, "width": 32, "depth": 1, "heads": 2},
    pool=2,
    video_pool=4,
    lora_r=4,
)


@pytest.fixture
def router():
    tok, llm = tiny_base()
    torch.manual_seed(1)
    return RouterModel.create(CONFIG, tok, llm)


def prompt(router, text_before="what colour is", regions=1):
    text = f"{router.image_placeholder()} {text_before} " + " ".join(["<region>"] * regions)
    return router.tokenizer(text, return_tensors="pt")["input_ids"]


def test_special_tokens_are_single_trainable_ids(router):
    ids = router.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    assert len(set(ids)) == len(SPECIAL_TOKENS) and router.tokenizer.unk_token_id not in ids
    trainable = {n for n, p in router.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable)
    assert any("trainable_tokens" in n for n in trainable)
    assert any(n.startswith("vision.") for n in trainable)
    base = [n for n in trainable if n.startswith("llm.") and "lora_" not in n]
    assert all("trainable_tokens" in n for n in base)  # the LLM itself stays frozen


def test_embed_fills_images_and_regions(router):
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 32:] = 255
    left = Region.of(64, 64, box=(0, 0, 32, 64))
    right = Region.of(64, 64, box=(32, 0, 64, 64))
    ids = prompt(router)
    assert (ids == router.image_id).sum() == router.image_tokens() == 4
    a = router.embed(ids, [img], [left])
    b = router.embed(ids, [img], [right])
    reg = (ids[0] == router.region_id).nonzero().item()
    assert not torch.allclose(a[0, reg], b[0, reg])
    assert torch.allclose(a[0, :reg], b[0, :reg])  # everything else identical
    out = router(inputs_embeds=a)
    assert out.logits.shape[:2] == ids.shape


def test_each_listed_object_is_one_token_read_under_its_box(router):
    from switchboard.specialists.objects import SceneObject

    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 32:] = 255

    def obj(k, xyxy):
        return SceneObject(k, xyxy, "circle", None, "small", "center", 0.9)

    text = f"{router.image_placeholder()} what is <object> red <object> blue"
    ids = router.tokenizer(text, return_tensors="pt")["input_ids"]
    at = (ids[0] == router.object_id).nonzero().flatten()
    a = router.embed(ids, [img], objects=[obj(1, (0, 0, 32, 64)), obj(2, (32, 0, 64, 64))])
    b = router.embed(ids, [img], objects=[obj(1, (32, 0, 64, 64)), obj(2, (0, 0, 32, 64))])
    assert torch.allclose(a[0, at[0]], b[0, at[1]]) and torch.allclose(a[0, at[1]], b[0, at[0]])
    assert not torch.allclose(a[0, at[0]], a[0, at[1]])
    assert torch.allclose(a[0, : at[0]], b[0, : at[0]])  # the text and image tokens are the same
    with pytest.raises(InvalidInputError, match="<object> tokens"):
        router.embed(ids, [img], objects=[obj(1, (0, 0, 32, 64))])


def test_video_frames_use_coarser_tokens_and_frame_index(router):
    frames = [np.full((64, 64, 3), v, np.uint8) for v in (0, 0)]
    n = router.image_tokens(video=True)
    assert n == 1
    text = router.image_placeholder(video=True) * 2 + " where is it"
    ids = router.tokenizer(text, return_tensors="pt")["input_ids"]
    emb = router.embed(ids, frames, frame_index=[0, 1])
    # Identical frames differ only by their frame-index embedding.
    assert not torch.allclose(emb[0, 0], emb[0, 1])


def test_mismatched_placeholders_are_typed_errors(router):
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InvalidInputError):
        router.embed(prompt(router, regions=1), [img], [])
    with pytest.raises(InvalidInputError):
        router.embed(prompt(router, regions=0), [img, img], [])
    with pytest.raises(InvalidInputError):
        router.embed(prompt(router, regions=0), [])
    with pytest.raises(InvalidInputError):
        router.embed(prompt(router), [img], [Region.of(32, 32, box=(0, 0, 8, 8))])


@pytest.mark.parametrize("fp16", [False, True])
def test_save_and_load_round_trip(router, tmp_path, fp16):
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    reg = Region.of(64, 64, point=(40, 20))
    ids = prompt(router)
    with torch.no_grad():  # move the trainable parts off their initial values
        for p in router.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    router.eval()
    with torch.no_grad():
        want = router(inputs_embeds=router.embed(ids, [img], [reg])).logits
    router.save_pretrained(tmp_path / "r", fp16=fp16)
    _, base = tiny_base()
    again = RouterModel.from_pretrained(tmp_path / "r", llm=base)
    with torch.no_grad():
        got = again(inputs_embeds=again.embed(ids, [img], [reg])).logits
    # fp32 files are exact; fp16 files round each trained weight to 11 significant bits.
    assert torch.allclose(want, got, atol=2e-3 if fp16 else 1e-5), (want - got).abs().max()
    with pytest.raises(FileNotFoundError):
        RouterModel.from_pretrained(tmp_path / "nothing")


def test_video_media_says_what_it_is(router):
    img = router.media_text(1)
    vid = router.media_text(4, video=True)
    assert img == router.image_placeholder() + "\n" and router.media_text(0) == ""
    assert vid.startswith("Video, 4 frames:") and vid.count("<image>") == 4 * router.image_tokens(
        True
    )


def test_legacy_folder_and_replaced_tower_round_trip(router, tmp_path):
    import json

    router.save_pretrained(tmp_path / "old")
    raw = json.loads((tmp_path / "old" / "router.json").read_text())
    raw["vit"].pop("stem", None)  # as routers saved before the stems existed
    (tmp_path / "old" / "router.json").write_text(json.dumps(raw))
    _, base = tiny_base()
    assert RouterModel.from_pretrained(tmp_path / "old", llm=base).vision.config.stem == "patch"
    router.replace_vision({**raw["vit"], "stem": "patch", "depth": 2})
    assert router.config.vit["depth"] == 2 and len(router.vision.blocks.layers) == 2
    router.eval()
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        want = router(inputs_embeds=router.embed(prompt(router, regions=0), [img])).logits
    router.save_pretrained(tmp_path / "new")
    _, base = tiny_base()
    again = RouterModel.from_pretrained(tmp_path / "new", llm=base)
    with torch.no_grad():
        got = again(inputs_embeds=again.embed(prompt(again, regions=0), [img])).logits
    torch.testing.assert_close(want, got)


def test_a_detector_stem_is_saved_without_its_detectors_weights(router, tmp_path):
    """The detector stem's frozen layers are detect-tiny's own weights: a saved router keeps
    only what it trained and loads the rest from the detector's folder, with the same outputs;
    layers that differ from the detector are saved as they are."""
    import json

    from safetensors.torch import load_file

    vit = json.loads(json.dumps(router.config.vit))
    router.replace_vision({**vit, "stem": "detector", "patch_size": 16, "depth": 1})
    router.vision.patch.load_detector()
    router.eval()
    img = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        want = router(inputs_embeds=router.embed(prompt(router, regions=0), [img])).logits
    router.save_pretrained(tmp_path / "r")
    saved = load_file(str(tmp_path / "r" / "vision.safetensors"))
    assert not any(k.startswith("vision.patch.layers.") for k in saved)
    assert any(k.startswith("vision.patch.own.") for k in saved)  # what it trained stays
    _, base = tiny_base()
    again = RouterModel.from_pretrained(tmp_path / "r", llm=base).eval()
    with torch.no_grad():
        got = again(inputs_embeds=again.embed(prompt(again, regions=0), [img])).logits
    torch.testing.assert_close(want, got)
    with torch.no_grad():
        next(router.vision.patch.layers.parameters()).add_(1.0)
    router.save_pretrained(tmp_path / "changed")
    saved = load_file(str(tmp_path / "changed" / "vision.safetensors"))
    assert any(k.startswith("vision.patch.layers.") for k in saved)
