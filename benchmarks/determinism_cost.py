"""What `--full_determinism` costs in speed, and whether either setting changes the bits (issue 18).

Runs the same short `train-tokenizer` command with and without `--full_determinism`, alternating, `--rounds`
times each, and prints each run's Trainer `train_runtime`, the median ratio, and whether the saved tokenizers
of each setting are bit-identical to each other. Nothing else should run on the machine meanwhile.

    . .venv/bin/activate
    python benchmarks/determinism_cost.py                   # 2 rounds of 120 steps: ~6 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile

import torch
from safetensors.torch import load_file


def run(out: str, steps: int, full_determinism: bool) -> float:
    command = ["transformers-unicode", "train-tokenizer", "--output_dir", out, "--max_steps", str(steps),
               "--save_strategy", "no", "--logging_steps", str(steps), "--train_limit", "512",
               "--per_device_train_batch_size", "8", "--seed", "0", "--disable_tqdm", "true"]  # fmt: skip
    if full_determinism:
        command.append("--full_determinism")
    log = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(re.search(r"'train_runtime': '([0-9.]+)'", log.stdout + log.stderr).group(1))


def same_tensors(a: str, b: str) -> bool:
    x, y = load_file(os.path.join(a, "model.safetensors")), load_file(os.path.join(b, "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="unicode-determinism-")
    seconds = {False: [], True: []}
    for index in range(args.rounds):
        for full in (False, True):  # interleaved, so a slow spell of the machine hits both alike
            seconds[full].append(run(os.path.join(root, f"{int(full)}-{index}"), args.steps, full))
            print(f"round {index}, full_determinism={full}: {seconds[full][-1]:.1f} s", flush=True)
    ratio = statistics.median(seconds[True]) / statistics.median(seconds[False])
    print(f"\n--full_determinism: median {statistics.median(seconds[True]):.1f} s against "
          f"{statistics.median(seconds[False]):.1f} s, {ratio:.2f}x")  # fmt: skip
    for full in (False, True):
        runs = [os.path.join(root, f"{int(full)}-{index}") for index in range(args.rounds)]
        identical = all(same_tensors(runs[0], other) for other in runs[1:])
        print(f"full_determinism={full}: the {args.rounds} runs are bit-identical: {identical}")
    print(
        f"with and without it, the same tensors: {same_tensors(os.path.join(root, '0-0'), os.path.join(root, '1-0'))}"
    )


if __name__ == "__main__":
    main()
