"""What one decoding step of SmolLM2 costs at several batch sizes, on this machine.

Why it matters: drawing an image is h*w*D = 256 decoding steps, and on a CPU a step at small batch is bound by
reading the LLM's weights, not by arithmetic. So the evaluation draws all its images in as few `generate`
calls as `--draw_batch_size` allows. This prints the per-step time (the mean of 30 cached single-token
steps after a 40-token prompt) at each batch size, side by side in one run. Nothing else should run meanwhile.

    . .venv/bin/activate
    python benchmarks/decode_step.py                      # batches 2, 8, 32; about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import time

import torch
from _machine import cpu_model, package_versions

from transformers_unicode import load_llm
from transformers_unicode.modeling.modeling_unicode import (
    CACHE_ARGUMENT,
)  # `cache` (>= 5.24) or `past_key_values`


@torch.no_grad()
def step_seconds(llm, batch: int, steps: int = 30, prompt: int = 40) -> float:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(100, llm.config.vocab_size - 100, (batch, prompt), generator=generator)
    cache = getattr(llm(ids, use_cache=True), CACHE_ARGUMENT)
    last = ids[:, -1:]
    start = time.perf_counter()
    for _ in range(steps):
        cache = getattr(llm(last, use_cache=True, **{CACHE_ARGUMENT: cache}), CACHE_ARGUMENT)
    return (time.perf_counter() - start) / steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    llm, _ = load_llm("embedded")
    llm.eval()
    step_seconds(llm, args.batch_sizes[0])  # warm-up
    print(f"# {cpu_model()}, {args.threads} threads; {package_versions('torch', 'transformers')}")
    print("| batch | ms per decoding step | ms per row | relative to the first |")
    print("|---|---|---|---|")
    first = None
    for batch in args.batch_sizes:
        seconds = step_seconds(llm, batch)
        first = first or seconds
        print(f"| {batch} | {seconds * 1000:.0f} | {seconds * 1000 / batch:.1f} | {seconds / first:.2f}x |")


if __name__ == "__main__":
    main()
