"""Stage I step time: the visual tokenizer's convolutions in the default layout against channels-last.

One process, the same weights, batch and optimizer for both; timed in alternating rounds so that drift on a
shared machine meets both alike; each figure is the median of the rounds.

    . .venv/bin/activate
    python benchmarks/tokenizer_step.py            # ~1 minute on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from transformers_unicode import UniCodeVisualTokenizer
from transformers_unicode.training.stage1 import TokenizerTrainingArguments


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=15, help="steps per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    default = UniCodeVisualTokenizer(TokenizerTrainingArguments().tokenizer_config()).train()
    models = {
        "default layout": default,
        "channels-last": copy.deepcopy(default).to(memory_format=torch.channels_last),
    }
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}
    pixels = torch.rand(args.batch_size, 3, 64, 64) * 2 - 1

    def step(name: str) -> None:
        loss = models[name](pixels).loss
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad()

    for name in models:  # warm-up: oneDNN picks its kernels on the first calls
        for _ in range(5):
            step(name)
    seconds = {name: [] for name in models}
    for round_index in range(args.rounds):
        order = list(models) if round_index % 2 == 0 else list(models)[::-1]
        for name in order:
            started = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            seconds[name].append((time.perf_counter() - started) / args.steps)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(
        f"Stage I step, {args.batch_size} images of 64 x 64, {args.threads} threads, median of {args.rounds} rounds"
    )
    for name, median in medians.items():
        print(
            f"  {name:<15} {1000 * median:7.1f} ms   ({medians['default layout'] / median:.2f}x the default's speed)"
        )


if __name__ == "__main__":
    main()
