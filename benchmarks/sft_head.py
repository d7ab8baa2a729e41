"""By-hand benchmark: a Stage II training step with the LM head on supervised positions only.

A measurement script, not a test: it prints a table of medians and ratios and never fails on them (it
does fail if the three losses disagree).

Run (real default: SmolLM2-135M-Instruct, 49152-wide head; a few minutes on 2 cores, on an idle machine):

    . .venv/bin/activate
    python benchmarks/sft_head.py                  # batch 8, 3 timed repeats
    python benchmarks/sft_head.py --tiny           # tiny random Llama: checks the script in seconds

What it measures. Real Stage II batches built by the library from OpenMoji (the processor's chat
template, the collator's labels): `group` questions, which read an image (h*w packed positions) and a
prompt and answer a few tokens, and `text_to_image` samples, which answer h*w*D codes. For each batch,
one full training step (forward, loss, backward; gradients on every parameter) done three ways:

1. full logits: `model(..., labels, skip_logits=False)`: the head on every position, then the loss;
2. TRL's fused head, as `SFTTrainer` runs it on this device (`add_fused_lm_head`, `fused_lm_head=True`):
   chunked log-probabilities without full logits; outside CUDA/XPU with Triton it scores every position;
3. supervised only (ours, `UniCodeSFTTrainer`): `skip_logits=True`, the head on target positions only.

The methods take turns within each round (order rotated), so slow patches of a shared machine fall on
all of them; the table gives the median step time and the ratio to (1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from _machine import cpu_model, package_versions


def build(tiny: bool):
    from transformers_unicode import UniCodeForCausalLM, UniCodeVisualTokenizer, UniCodeVisualTokenizerConfig

    if tiny:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
        from conftest import tiny_unicode

        return tiny_unicode()
    from transformers_unicode import load_llm

    llm, tokenizer = load_llm("embedded")
    folder = "runs/tokenizer"
    if os.path.isfile(os.path.join(folder, "config.json")):
        visual = UniCodeVisualTokenizer.from_pretrained(folder)
    else:  # untrained: the codes do not change the cost of a step
        config = UniCodeVisualTokenizerConfig(
            image_size=64,
            latent_size=8,
            patch_size=4,
            quantizer="rq",
            codes_per_position=4,
            num_visual_codes=2048,
            block_out_channels=(64, 128),
        )
        visual = UniCodeVisualTokenizer.from_llm(llm, config)
    return UniCodeForCausalLM.from_llm(llm, visual, tokenizer=tokenizer, return_processor=True)


def batches(processor, batch_size: int):
    from transformers_unicode.data.openmoji import load_openmoji
    from transformers_unicode.data.openmoji_conversations import openmoji_conversations
    from transformers_unicode.training.collator import UniCodeDataCollator
    from transformers_unicode.training.sft_data import tokenize_conversations

    size = processor.visual_tokenizer.config.image_size
    images = load_openmoji(split="train", size=size, limit=batch_size)
    collator = UniCodeDataCollator.from_processor(processor)
    out = {}
    for task in ("group", "text_to_image"):
        samples = tokenize_conversations(openmoji_conversations(task, images=images), processor, task=task)
        out[task] = collator([samples[i] for i in range(len(samples))])
    return out


def step(model, batch, method: str):
    model.zero_grad(set_to_none=True)
    if method == "trl_fused":
        output = model(**batch, fused_lm_head=True)
        loss = -output.log_probs.sum() / output.label_mask.sum()
    else:
        loss = model(**batch, skip_logits=method == "supervised_only").loss
    loss.backward()
    return loss.detach().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from trl.trainer.utils import add_fused_lm_head

    model, processor = build(args.tiny)
    model.train()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # what SFTTrainer does
    vocab = model.config.text_config.vocab_size
    print(f"# {cpu_model()}, {args.threads} threads; {package_versions('torch', 'transformers', 'trl')}")
    print(
        f"# model: {'tiny' if args.tiny else 'SmolLM2-135M-Instruct'}, head {model.config.text_config.hidden_size} x {vocab}"
    )
    methods = ("full_logits", "trl_fused", "supervised_only")
    print(
        f"| batch | tokens | targets | {' | '.join(methods)} | speed-up: fused vs full | ours vs full | ours vs fused |"
    )
    print("|---|---|---|" + "---|" * (len(methods) + 3))
    for task, batch in batches(processor, args.batch_size).items():
        tokens, targets = int(batch["attention_mask"].sum()), int((batch["labels"][:, 1:] != -100).sum())
        losses = {m: step(model, batch, m) for m in methods}  # warm-up, and the three must agree
        assert max(losses.values()) - min(losses.values()) < 1e-3 * max(1.0, abs(losses["full_logits"])), (
            losses
        )
        times = {m: [] for m in methods}
        for round_index in range(args.repeats):
            order = methods[round_index % 3 :] + methods[: round_index % 3]
            for method in order:
                start = time.perf_counter()
                step(model, batch, method)
                times[method].append(time.perf_counter() - start)
        median = {m: statistics.median(t) for m, t in times.items()}
        cells = " | ".join(f"{median[m] * 1000:.0f} ms" for m in methods)
        print(
            f"| {task} x{args.batch_size} | {tokens} | {targets} | {cells} | "
            f"{median['full_logits'] / median['trl_fused']:.2f}x | {median['full_logits'] / median['supervised_only']:.2f}x | "
            f"{median['trl_fused'] / median['supervised_only']:.2f}x |"
        )
    print(
        "# speed-up = the other method's median step time / this one's (below 1: slower); logits held by (1): "
        "tokens x vocab x 4 bytes, by (3): targets x vocab x 4 bytes, by (2): one chunk"
    )


if __name__ == "__main__":
    main()
