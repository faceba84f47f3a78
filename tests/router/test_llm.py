"""SmolLM2 from the GGUF file, cached once as safetensors, answers like the instruct model."""

from __future__ import annotations

from switchboard.router import llm


def test_gguf_is_dequantized_once_then_read_from_the_cache(smollm, llm_home, monkeypatch):
    tok, model, _ = smollm
    assert (llm_home / "cache" / llm.CACHE_NAME / "model.safetensors").is_file()
    assert model.config.hidden_size == 576 and model.config.vocab_size == 49152

    def no_gguf(*a, **k):
        raise AssertionError("the cache must be used")

    monkeypatch.setattr(llm, "build_cache", no_gguf)
    tok2, model2 = llm.load_llm()
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert (a == b).all(), name
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok2.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    out = model2.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok2.decode(out[0, ids.shape[1] :])
