"""How far apart two seeds land: the held-out PSNR of the same Stage I command over several seeds (issue 18).

A seed now reproduces a run bit for bit, so the noise that a comparison between two configurations must beat
is no longer run-to-run but seed-to-seed: a different initialisation and data order. This runs issue 18's
`train-tokenizer` command once per seed, one after another, and prints each seed's held-out PSNR (from the
run's own `eval_results.json`), the mean, the standard deviation and the range. Nothing else should run on
the machine meanwhile (the PSNR does not depend on it, the times it prints do).

    . .venv/bin/activate
    python benchmarks/seed_spread.py                     # seeds 0-2, 300 steps each: ~20 minutes on 2 cores
    python benchmarks/seed_spread.py --steps 20 --train_limit 64 --eval_limit 16   # the script, in a minute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _machine import cpu_model, package_versions


def run(out: str, seed: int, args) -> dict:
    cli = os.path.join(
        os.path.dirname(sys.executable), "transformers-unicode"
    )  # this environment's, activated or not
    command = [cli, "train-tokenizer", "--output_dir", out, "--max_steps", str(args.steps),
               "--save_strategy", "no", "--logging_steps", str(args.steps), "--train_limit", str(args.train_limit),
               "--per_device_train_batch_size", "8", "--seed", str(seed), "--disable_tqdm", "true"]  # fmt: skip
    if args.eval_limit is not None:
        command += ["--eval_limit", str(args.eval_limit)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    with open(os.path.join(out, "eval_results.json")) as file:
        return json.load(file)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--train_limit", type=int, default=512)
    parser.add_argument(
        "--eval_limit", type=int, default=None, help="held-out images (default: the command's)"
    )
    args = parser.parse_args(argv)
    print(f"# {cpu_model()}; {package_versions('torch', 'transformers')}")
    print(
        f"# train-tokenizer --max_steps {args.steps} --train_limit {args.train_limit} "
        "--per_device_train_batch_size 8, one run per seed"
    )
    print("| seed | held-out PSNR | held-out ids in use | wall time |")
    print("|---|---|---|---|")
    psnrs = []
    with tempfile.TemporaryDirectory() as root:
        for seed in args.seeds:
            start = time.perf_counter()
            metrics = run(os.path.join(root, f"seed{seed}"), seed, args)
            psnrs.append(metrics["psnr"])
            usage = metrics.get("codebook_usage")
            usage_text = f"{usage:.1%}" if isinstance(usage, float) else "n/a"
            print(
                f"| {seed} | {metrics['psnr']:.2f} dB | {usage_text} | {time.perf_counter() - start:.0f} s |"
            )
    spread = max(psnrs) - min(psnrs)
    deviation = statistics.stdev(psnrs) if len(psnrs) > 1 else 0.0
    print(
        f"\nheld-out PSNR over {len(psnrs)} seeds: mean {statistics.mean(psnrs):.2f} dB, "
        f"standard deviation {deviation:.2f} dB, range {spread:.2f} dB"
    )


if __name__ == "__main__":
    main()
