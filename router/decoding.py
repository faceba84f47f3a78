"""Decoding the router's reply so that every call is valid by construction.

Between ``<call>`` and ``</call>`` the tokens are constrained by **xgrammar** to the JSON schema
of the registered tools (:func:`call_schema`: one alternative per tool, ``tool`` a constant and
``args`` that tool's pydantic schema), written compactly (no whitespace), so an unknown tool, a
missing required argument or a malformed value cannot be produced, whatever the prompt says.
Before the first call the model writes prose freely, except that call-closing, signal and
placeholder tokens are masked; after a call only another ``<call>`` or the end may follow (the
wire format has no prose after calls). When the grammar allows only one continuation
(``{"tool":"``, a tool name), that string is appended without sampling (jump-forward) and run
through the model in one forward pass — as the tokenizer would encode it in context, and
without its last token, so the model never sees a token boundary it was not trained on
(:meth:`ConstrainedDecoder._forced_tokens`). A finished call is also checked by its tool's own
validation (cross-field checks such as a box's ``x1 < x2``, which no JSON schema states); one
that fails is rewound and rewritten without the failing optional arguments
(:meth:`ConstrainedDecoder._repair`). After ``</call>`` the called tool's ``<sig_k>`` tokens
are appended (forced) when signals are wanted; their last-layer hidden states are returned for
the signal heads.

Why xgrammar over outlines and lm-format-enforcer: it compiles our JSON schemas against the
GGUF-derived SmolLM2 tokenizer in well under a second, its token masks cost microseconds per
step on CPU (a precomputed adaptive mask cache, not a per-step walk of the vocabulary as in
lm-format-enforcer), it exposes the matcher step by step (``accept_token``,
``fill_next_token_bitmask``, ``find_jump_forward_string``) so grammar-constrained calls can be
interleaved with free prose and forced signal tokens in one decoding loop, and it is the engine
vLLM, SGLang and TensorRT-LLM use (well kept). See docs/router.md.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import torch
from switchboard.core import MalformedCallError, Registry

from .codec import CALL_CLOSE, CALL_OPEN, IMAGE_TOKEN, REGION_TOKEN, SIG_TOKENS, call_json


def call_schema(registry: Registry, names: list[str] | None = None) -> dict[str, Any]:
    """The JSON schema of one call to any of ``names`` (default: every registered tool).
    Fields that carry bulk data (masks: ``x-bulk``) are left out, the agent fills them; so are
    fields only another specialist sets (``x-peer``)."""
    alternatives, defs = [], {}
    for name in names or registry.names():
        schema = _drop_bulk(copy.deepcopy(registry.cls(name).Args.model_json_schema()))
        local = schema.pop("$defs", {})
        prefix = f"{name}__"
        _rename_refs(schema, prefix)
        for key, sub in local.items():
            _rename_refs(sub, prefix)
            defs[prefix + key] = sub
        schema.pop("title", None)
        alternatives.append(
            {
                "type": "object",
                "properties": {"tool": {"const": name}, "args": schema},
                "required": ["tool", "args"],
                "additionalProperties": False,
            }
        )
    if not alternatives:
        raise ValueError("no tools registered")
    out: dict[str, Any] = {"anyOf": alternatives}
    if defs:
        out["$defs"] = defs
    return out


def tools_for_media(registry: Registry, kind: str) -> list[str] | None:
    """The tools a call may name when the turn carries ``kind`` of media ("image", "video" or
    "none"): those that take it, and those that take no media at all (generation). A tool that
    cannot take the media is not a choice the decoder offers: "where does the star go in this
    clip?" cannot become a segment call on a video. With no media, every tool stays open (a
    call then fails with the tool's own "takes image, got none", which the reply says);
    likewise when no tool fits. None means every tool."""
    if kind == "none":
        return None
    names = [
        n
        for n in registry.names()
        if kind in registry.cls(n).media or not {"image", "video"} & set(registry.cls(n).media)
    ]
    return names if names and len(names) < len(registry.names()) else None


def _is_bulk(node: Any) -> bool:
    """A field the router never writes: ``x-bulk`` (masks and other data the agent supplies)
    or ``x-peer`` (set by another specialist that calls this one)."""
    if not isinstance(node, dict):
        return False
    if node.get("x-bulk") or node.get("x-peer"):
        return True
    alts = node.get("anyOf", [])
    return any(_is_bulk(a) for a in alts)


def _drop_bulk(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties", {})
    for key in [k for k, v in props.items() if _is_bulk(v)]:
        del props[key]
        if key in schema.get("required", []):
            raise ValueError(f"required field {key!r} holds bulk data the router cannot write")
    return schema


def _rename_refs(node: Any, prefix: str) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/$defs/" + prefix + ref[len("#/$defs/") :]
        for v in node.values():
            _rename_refs(v, prefix)
    elif isinstance(node, list):
        for v in node:
            _rename_refs(v, prefix)


def cast_cache(cache: Any, dtype: torch.dtype) -> None:
    """Cast a transformers KV cache's keys and values to ``dtype`` in place."""
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor) and t.dtype != dtype:
                setattr(layer, name, t.to(dtype))


@dataclass
class Decoded:
    """A decoded reply: its text, its token ids, and per call with signals the last-layer hidden
    states ``[K, d]`` at its ``<sig_k>`` positions."""

    text: str
    token_ids: list[int]
    signal_hidden: list[torch.Tensor] = field(default_factory=list)
    steps: int = 0  # model forward passes (jump-forward makes this smaller than token_ids)
    features: torch.Tensor | None = None  # the images' patch features (set by Router.route)
    # With signals: the last-layer states of the whole sequence (prompt and reply) ``[T, d]``,
    # and per call with signals the position of its first ``<sig_k>`` in that sequence.
    states: torch.Tensor | None = None
    signal_positions: list[int] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)  # set by Router.route
    objects: torch.Tensor | None = None  # the first image's object memory (Router.route)
    listed: list[Any] | None = None  # the first image's object list in the prompt (Router.route)
    image_side: float = 0.0  # the first image's longest side in pixels (Router.route)
    cache: Any = None  # the KV cache after the reply (prompt + fed tokens)
    reused: int = 0  # prompt positions taken from a reused prefix cache (not recomputed)


class ConstrainedDecoder:
    """Greedy decoding of a hybrid-call reply with xgrammar-constrained calls."""

    def __init__(self, tokenizer: Any, registry: Registry, vocab_size: int) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.tokenizer, self.registry, self.vocab_size = tokenizer, registry, vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgr.GrammarCompiler(info)
        self._grammars: dict[tuple[str, ...], Any] = {}
        self.grammar = self.grammar_for(None)
        ids = tokenizer.convert_tokens_to_ids
        self.open_id, self.close_id = ids(CALL_OPEN), ids(CALL_CLOSE)
        self.sig_ids = [ids(t) for t in SIG_TOKENS]
        self.eos_id = tokenizer.eos_token_id
        banned = [self.close_id, *self.sig_ids, ids(IMAGE_TOKEN), ids(REGION_TOKEN)]
        self.prose_mask = torch.zeros(vocab_size, dtype=torch.bool)
        self.prose_mask[banned] = True
        self.prose_mask[len(tokenizer) :] = True  # padding rows of the embedding

    def grammar_for(self, tools: list[str] | None) -> Any:
        """The compiled grammar of one call to any of ``tools`` (default: every registered
        tool), compiled once per set."""
        key = tuple(sorted(tools)) if tools else tuple(sorted(self.registry.names()))
        if key not in self._grammars:
            schema = json.dumps(call_schema(self.registry, list(key)))
            self._grammars[key] = self.compiler.compile_json_schema(
                schema, any_whitespace=False, separators=(",", ":")
            )
        return self._grammars[key]

    def _forced_tokens(self, body: list[int], jump: str) -> list[int]:
        """The tokens of the forced string ``jump`` that the tokenizer itself would write after
        ``body`` (the call's tokens so far), less the last one.

        The model was trained on the tokenizer's own encoding of whole calls, where a forced
        piece often merges with its neighbours (``{"``, ``","``, ``"}}``). Feeding the forced
        string as its own tokens would put the model in contexts it never saw, and it then
        closes objects early (``{"op":"move"}``). So the call text is re-encoded with the jump
        appended; if the result still starts with the tokens already written, the new tokens are
        forced, except the last, which may merge with what the model writes next (it is sampled
        under the grammar instead). Otherwise nothing is forced and the model goes on step by step.
        """
        text = self.tokenizer.decode(body) + jump
        canon = self.tokenizer.encode(text, add_special_tokens=False)
        if canon[: len(body)] != body:
            return []
        return canon[len(body) : -1]

    def _repair(self, body: str) -> str | None:
        """None if the finished call ``body`` passes its tool's own validation; else the call
        without the optional arguments that fail it.

        The grammar holds everything a JSON schema can say, but not the tools' cross-field
        checks (a box's ``x1 < x2``, a point inside the image is checked later against the
        media). A call that breaks one is not handed on: each optional argument named by the
        error (or, for a model-level check, each optional argument in turn, last first) is left
        out until the call validates. A required argument that cannot be valid leaves nothing
        to repair: :class:`MalformedCallError`."""
        from pydantic import ValidationError

        call = json.loads(body)
        cls = self.registry.cls(call["tool"])
        args = dict(call["args"])

        def errors(a: dict[str, Any]) -> list[Any] | None:
            try:
                cls.Args.model_validate(a)
                return None
            except ValidationError as exc:
                return exc.errors()

        errs = errors(args)
        if errs is None:
            return None
        fields = cls.Args.model_fields
        optional = [k for k in args if k in fields and not fields[k].is_required()]
        named = [e["loc"][0] for e in errs if e["loc"] and e["loc"][0] in optional]
        for drop in [named] if named else [[k] for k in reversed(optional)]:
            trial = {k: v for k, v in args.items() if k not in drop}
            if errors(trial) is None:
                return call_json(call["tool"], trial)
        raise MalformedCallError(f"the call to {call['tool']!r} fails its tool's checks: {errs}")

    @torch.no_grad()
    def generate(
        self,
        llm: Any,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int = 96,
        with_signals: bool = False,
        max_calls: int = 4,
        in_call: bool = False,
        past: Any = None,
        step_llm: Any = None,
        tools: list[str] | None = None,
    ) -> Decoded:
        """Decode after the prompt embeddings ``[1, T, d]`` (images and regions already in).
        ``in_call``: the prompt ends with ``<call>``, so decoding starts inside a call.
        ``past``: a KV cache that already holds the prompt's first positions (a shared prefix
        with an earlier turn); only the rest is prefilled. Not with signals (the heads read the
        whole prompt's states).
        ``step_llm``: a copy of ``llm`` in another dtype (fp16) that runs the decoding steps
        after ``llm`` has prefilled the prompt; the KV cache is cast to its dtype once, and cast
        back when a later prefill reuses it. A step reads every weight for one token, so it is
        bound by memory bandwidth and half-width weights halve it; a prefill is a real matrix
        product, which CPUs do fastest in fp32 (see docs/router.md, "Decoding in fp16").
        ``tools``: the tools a call may name (default: every registered one), e.g. those that
        take the turn's media (:func:`tools_for_media`)."""
        step_llm = step_llm if step_llm is not None else llm
        embed = step_llm.get_input_embeddings()
        start = 0 if past is None else past.get_seq_length()
        run = self._prefill(llm, step_llm, inputs_embeds, with_signals, past)
        past = run.cache
        gen = self._steps(run, self.grammar_for(tools), with_signals, max_new_tokens,
                          max_calls, in_call)  # fmt: skip
        try:
            feed = next(gen)
            while True:
                if feed.keep is not None:  # rewind: drop the tail past ``keep`` positions
                    past.crop(feed.keep - past.get_seq_length())
                o = step_llm(
                    inputs_embeds=embed(torch.tensor([feed.ids])),
                    cache=past,
                    use_cache=True,
                    output_hidden_states=feed.hidden,
                    logits_to_keep=1,
                )
                past = o.cache
                hidden = o.hidden_states[-1][0].float() if feed.hidden else None
                feed = gen.send((o.logits[0, -1], hidden))
        except StopIteration as done:
            decoded = done.value
        decoded.cache, decoded.reused = past, start
        return decoded

    @torch.no_grad()
    def generate_batch(
        self,
        llm: Any,
        prompts: list[torch.Tensor],
        with_signals: list[bool],
        tools: list[list[str] | None],
        max_new_tokens: int = 96,
        max_calls: int = 4,
        step_llm: Any = None,
    ) -> list[Decoded | Exception]:
        """:meth:`generate` for several prompts ``[1, T_i, d]`` at once: each is prefilled on
        its own, then every decoding step of every sequence still running is one forward pass
        over the batch (a step reads every weight once for all of them: on a CPU it costs
        about what one sequence's step does). Each sequence follows exactly the single path's
        logic (grammar, jump-forward, repair, signal tokens); the batch only pads: rows are
        left-padded to one cache length, a step feeding fewer tokens than another is padded
        on the left (every row's last token is the step's last position), and a rewound call
        is masked out instead of cropped. A sequence's
        failure (a malformed call) is returned in its place; the others go on."""
        from transformers import DynamicCache

        step_llm = step_llm if step_llm is not None else llm
        embed = step_llm.get_input_embeddings()
        runs, gens, feeds, out = [], [], [], [None] * len(prompts)
        for i, emb in enumerate(prompts):
            run = self._prefill(llm, step_llm, emb, with_signals[i], None)
            gen = self._steps(run, self.grammar_for(tools[i]), with_signals[i],
                              max_new_tokens, max_calls, False)  # fmt: skip
            runs.append(run)
            gens.append(gen)
            feeds.append(next(gen))
        # The batch cache: every row left-padded to the longest prompt. ``mask`` says which
        # cache columns are real for each row; ``cols[i]`` lists the columns that hold row i's
        # positions 0, 1, … (a step's padding and a rewound call leave masked columns between).
        n_layers = len(runs[0].cache.layers)
        width = max(r.cache.get_seq_length() for r in runs)
        cache = DynamicCache()
        for layer in range(n_layers):
            keys, values = [], []
            for r in runs:
                k, v = r.cache.layers[layer].keys, r.cache.layers[layer].values
                pad = width - k.shape[2]
                keys.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
                values.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
            cache.update(torch.cat(keys), torch.cat(values), layer)
        mask = torch.zeros(len(runs), width, dtype=torch.long)
        cols: list[list[int]] = []
        for i, r in enumerate(runs):
            length = r.cache.get_seq_length()
            mask[i, width - length :] = 1
            cols.append(list(range(width - length, width)))
            r.cache = None  # its keys and values are in the batch now
        rows = list(range(len(runs)))  # the sequences still decoding, in batch order
        while rows:
            n = max(len(feeds[i].ids) for i in rows)
            total = mask.shape[1]
            ids = torch.zeros(len(rows), n, dtype=torch.long)
            new_mask = torch.zeros(len(rows), n, dtype=torch.long)
            position = torch.zeros(len(rows), n, dtype=torch.long)
            for b, i in enumerate(rows):
                f = feeds[i]
                if f.keep is not None:  # rewind: the row's positions from ``keep`` on are out
                    mask[b, cols[i][f.keep :]] = 0
                    del cols[i][f.keep :]
                # Right-aligned: every row's last token is the step's last position, so one
                # position's logits serve all rows (the 49k-way head is not run on padding).
                k = len(f.ids)
                ids[b, n - k :] = torch.tensor(f.ids)
                new_mask[b, n - k :] = 1
                position[b] = len(cols[i]) - (n - k) + torch.arange(n)  # padding's are unused
                cols[i].extend(range(total + n - k, total + n))
            mask = torch.cat([mask, new_mask], 1)
            o = step_llm(
                inputs_embeds=embed(ids),
                attention_mask=mask,
                position_ids=position,
                cache=cache,
                use_cache=True,
                output_hidden_states=any(feeds[i].hidden for i in rows),
                logits_to_keep=1,
            )
            cache = o.cache
            going = []
            for b, i in enumerate(rows):
                k = len(feeds[i].ids)
                hidden = o.hidden_states[-1][b, n - k :].float() if feeds[i].hidden else None
                try:
                    feeds[i] = gens[i].send((o.logits[b, -1], hidden))
                    going.append(b)
                except StopIteration as done:
                    out[i] = done.value
                except Exception as exc:  # this sequence's failure, not the batch's
                    out[i] = exc
            if len(going) < len(rows):  # finished rows leave the batch
                index = torch.tensor(going, dtype=torch.long)
                for layer in cache.layers:
                    layer.keys, layer.values = layer.keys[index], layer.values[index]
                mask = mask[index]
                rows = [rows[b] for b in going]
        return out  # type: ignore[return-value]

    def _prefill(self, llm: Any, step_llm: Any, inputs_embeds: torch.Tensor,
                 with_signals: bool, past: Any) -> _Run:  # fmt: skip
        """Run the prompt through ``llm`` (the part ``past`` does not hold), in its dtype; the
        cache is cast to ``step_llm``'s for the steps."""
        keep = with_signals  # the signal heads read the states of the request and the call
        if past is not None and keep:
            raise ValueError("a reused prefix cache has no hidden states for the signal heads")
        start = 0 if past is None else past.get_seq_length()
        if start >= inputs_embeds.shape[1]:
            raise ValueError("the reused prefix must leave at least one prompt position")
        prefill_dtype = llm.get_input_embeddings().weight.dtype
        step_dtype = step_llm.get_input_embeddings().weight.dtype
        if past is not None:
            cast_cache(past, prefill_dtype)
        # Only the last position's logits are read: the prompt's 49k-way projections (3.4 GFLOP
        # for a 119-token prompt) would be thrown away.
        out = llm(
            inputs_embeds=inputs_embeds[:, start:],
            cache=past,
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=keep,
        )
        if step_dtype != prefill_dtype:
            cast_cache(out.cache, step_dtype)
        states = [out.hidden_states[-1][0]] if keep else []
        return _Run(out.cache, out.logits[0, -1], inputs_embeds.shape[1], states)

    def _steps(self, run: _Run, grammar: Any, with_signals: bool, max_new_tokens: int,
               max_calls: int, in_call: bool) -> Generator[_Feed, Any, Decoded]:  # fmt: skip
        """One sequence's decoding after its prefill, as a generator: it yields the tokens to
        feed next (:class:`_Feed`), is sent back the last fed position's logits and, when it
        asked, the fed positions' last-layer states, and returns the :class:`Decoded` (without
        its cache). :meth:`generate` drives one; :meth:`generate_batch` several at once."""
        # Long on purpose: one loop over shared decoding state (the last logits, the grammar
        # matcher, the tokens and states so far) that each branch advances; split into
        # functions, each would pass all of it back and forth.
        keep = with_signals
        prompt_len, logits, states = run.prompt_len, run.logits, run.states
        sig_positions: list[int] = []
        tokens: list[int] = []
        hidden: list[torch.Tensor] = []
        steps, calls = 1, 0
        matcher = self.xgr.GrammarMatcher(grammar) if in_call else None
        call_start = 0
        bitmask = self.xgr.allocate_token_bitmask(1, self.vocab_size)

        def fed(ids: list[int], want_hidden: bool = False, rewind: int | None = None) -> _Feed:
            return _Feed(ids, want_hidden or keep, rewind)

        while len(tokens) < max_new_tokens:
            feed: _Feed | None = None
            sig_count = 0
            if matcher is None:  # prose before the first call; after a call, <call> or the end
                if calls:
                    allowed = [self.open_id, self.eos_id]
                    scores = torch.full(logits.shape, float("-inf"))
                    scores[allowed] = logits[allowed].float()
                else:
                    scores = logits.float().masked_fill(self.prose_mask, float("-inf"))
                if calls >= max_calls:
                    scores[self.open_id] = float("-inf")
                tok = int(scores.argmax())
                if tok == self.eos_id:
                    break
                if tok == self.open_id:
                    matcher = self.xgr.GrammarMatcher(grammar)
                    call_start = len(tokens) + 1
                feed = fed([tok])
            else:  # inside a call
                jump = matcher.find_jump_forward_string()
                ids = self._forced_tokens(tokens[call_start:], jump) if jump else []
                accepted = []
                for t in ids:
                    if not matcher.accept_token(t):
                        break
                    accepted.append(t)
                if not accepted:
                    matcher.fill_next_token_bitmask(bitmask)
                    scores = logits.float()[None].clone()
                    self.xgr.apply_token_bitmask_inplace(scores, bitmask)
                    tok = int(scores[0].argmax())
                    if not matcher.accept_token(tok):
                        raise MalformedCallError("the grammar rejected its own best token")
                    accepted = [tok]
                if matcher.is_completed():
                    body = self.tokenizer.decode(tokens[call_start:] + accepted)
                    fixed = self._repair(body)
                    rewind = None
                    if fixed is not None:  # rewind to the call's start; write the repaired call
                        rewind = prompt_len + call_start
                        del tokens[call_start:]
                        if keep:
                            states[:] = [torch.cat(states)[: prompt_len + call_start]]
                        body = fixed
                        accepted = self.tokenizer.encode(fixed, add_special_tokens=False)
                    tool = json.loads(body)["tool"]
                    spec = self.registry.cls(tool).signal
                    sigs = self.sig_ids[: spec.num_tokens] if with_signals and spec else []
                    feed = fed([*accepted, self.close_id, *sigs], bool(sigs), rewind)
                    sig_count = len(sigs)
                    matcher, calls = None, calls + 1
                else:
                    feed = fed(accepted)
            logits, out_hidden = yield feed
            steps += 1
            tokens.extend(feed.ids)
            if keep:
                states.append(out_hidden)
            if sig_count:
                hidden.append(out_hidden[-sig_count:])
                sig_positions.append(prompt_len + len(tokens) - sig_count)
        if matcher is not None:
            raise MalformedCallError(f"a call did not finish within {max_new_tokens} tokens")
        text = self.tokenizer.decode(tokens, skip_special_tokens=False)
        return Decoded(
            text=text,
            token_ids=tokens,
            signal_hidden=hidden,
            steps=steps,
            states=torch.cat(states) if states else None,
            signal_positions=sig_positions,
        )


@dataclass
class _Run:
    """A sequence after its prefill: its cache, last logits, prompt length and (with signals)
    the prompt's last-layer states."""

    cache: Any
    logits: torch.Tensor
    prompt_len: int
    states: list[torch.Tensor]


@dataclass
class _Feed:
    """What a sequence feeds next: ``ids``; ``hidden``: the fed positions' last-layer states
    are wanted back; ``keep``: first drop every position from this one on (a rewound call)."""

    ids: list[int]
    hidden: bool = False
    keep: int | None = None
