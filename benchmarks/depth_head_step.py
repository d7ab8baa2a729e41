"""What a Stage II drawing sample costs with the flat layout and with the depth head (issue 16), side by side.

A measurement script, not a test: it prints a table and a ratio and never fails on them (it does fail if the
two heads were not given the same drawings).

    . .venv/bin/activate
    python benchmarks/depth_head_step.py             # SmolLM2-135M-Instruct, batch 8, 3 timed rounds
    python benchmarks/depth_head_step.py --tiny      # tiny random Llama: checks the script in seconds

What it measures. Two UniCode models built the same way from two loads of the same LLM (same seed, same
weights) and one visual tokenizer, one with `image_head="flat"` and one with `image_head="depth"` (its depth
head untrained: that does not change the cost of a step). The same OpenMoji `text_to_image` drawings (the
library's conversations, tokenised by `tokenize_conversations` for each head, collated by
`UniCodeDataCollator(image_head=...)`) are one batch for each: the flat batch writes each image as h*w*D code
ids, the depth batch as h*w packed ids whose D codes the depth head predicts. One training step is what
`UniCodeSFTTrainer` runs (train mode, the model's own loss with `skip_logits`, backward on every parameter).
Rounds alternate the order of the two; the table gives the median step, the seconds per drawing sample and
the ratio (issue 16's target: depth >= 2x cheaper).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from _machine import cpu_model, package_versions
from generation import REAL_VISUAL  # the same 8 x 8 x 4 tokenizer as the generation benchmark

TARGET = 2.0


def build(tiny: bool, image_head: str, seed: int = 0):
    """(model, processor) with the given head; the same LLM weights and visual tokenizer for a given seed."""
    from transformers_unicode import UniCodeForCausalLM, UniCodeVisualTokenizer, UniCodeVisualTokenizerConfig

    if tiny:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
        from conftest import tiny_unicode

        return tiny_unicode(seed=seed, image_head=image_head)
    from transformers_unicode import load_llm

    llm, tokenizer = load_llm("embedded")
    torch.manual_seed(seed)
    visual = UniCodeVisualTokenizer.from_llm(llm, UniCodeVisualTokenizerConfig(**REAL_VISUAL))
    return UniCodeForCausalLM.from_llm(
        llm, visual, tokenizer=tokenizer, return_processor=True, image_head=image_head
    )


def drawing_batch(processor, batch_size: int, image_head: str):
    from transformers_unicode.data.openmoji import load_openmoji
    from transformers_unicode.data.openmoji_conversations import openmoji_conversations
    from transformers_unicode.training.collator import UniCodeDataCollator
    from transformers_unicode.training.sft_data import tokenize_conversations

    size = processor.visual_tokenizer.config.image_size
    images = load_openmoji(split="train", size=size, limit=batch_size)
    records = openmoji_conversations("text_to_image", images=images)
    samples = tokenize_conversations(records, processor, task="text_to_image", image_head=image_head)
    collator = UniCodeDataCollator.from_processor(processor, image_head=image_head)
    return collator([samples[i] for i in range(len(samples))]), list(records["messages"])


def train_step(model, batch) -> float:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return float(loss.detach())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models, batches, messages = {}, {}, {}
    for head in ("flat", "depth"):
        model, processor = build(args.tiny, head)
        models[head] = model.train()
        batches[head], messages[head] = drawing_batch(processor, args.batch_size, head)
    assert messages["flat"] == messages["depth"], "the two heads must train on the same drawings"
    print(f"# {cpu_model()}, {args.threads} threads; {package_versions('torch', 'transformers', 'trl')}")
    text, visual = models["flat"].config.text_config, models["flat"].config.visual_config
    print(
        f"# {'tiny random Llama' if args.tiny else 'SmolLM2-135M-Instruct'} ({text.num_hidden_layers} layers, "
        f"hidden {text.hidden_size}); images {visual.latent_size}x{visual.latent_size}x{visual.codes_per_position}; "
        f"depth head {models['depth'].config.depth_num_layers} layers; load average {os.getloadavg()[0]:.2f}"
    )
    for head in models:
        train_step(models[head], batches[head])  # warm-up
    times = {head: [] for head in models}
    for round_index in range(args.repeats):
        for head in sorted(models, reverse=bool(round_index % 2)):
            start = time.perf_counter()
            train_step(models[head], batches[head])
            times[head].append(time.perf_counter() - start)
    print(
        "| head | tokens per sample (mean) | LLM positions per image | step (median) | s per drawing sample |"
    )
    print("|---|---|---|---|---|")
    median = {head: statistics.median(t) for head, t in times.items()}
    for head, batch in batches.items():
        per_sample = int(batch["attention_mask"].sum()) / batch["input_ids"].shape[0]
        print(
            f"| {head} | {per_sample:.0f} | {models[head].config.image_llm_steps} | {median[head]:.2f} s | "
            f"{median[head] / args.batch_size:.3f} s |"
        )
    ratio = median["flat"] / median["depth"]
    print(
        f"depth {ratio:.2f}x cheaper per drawing sample: {'PASS' if ratio >= TARGET else 'MISS'} (>= {TARGET:g}x)"
    )
    print("all steps (s): " + "; ".join(f"{h} " + " ".join(f"{t:.2f}" for t in v) for h, v in times.items()))


if __name__ == "__main__":
    main()
