"""Peak resident memory of each stage of the main job, each in a process of its own (issue 17 §1).

The quickstart's three stages (Stage I, Stage II, evaluation) run one after another, each in a fresh Python
process, at the default sizes (SmolLM2, 64 px OpenMoji, the default batch sizes, mixture and evaluation
limits) but with few optimizer steps: a stage's memory does not grow with its step count, its time does.
Each process reports the kernel's high-water mark of its resident memory (`VmHWM`), so no stage inherits
another's leftovers, which is what "runs each stage alone" means. The in-process figures the quickstart
writes to `report.json` (`peak_memory_gb`) can then be compared with these.

    . .venv/bin/activate
    python benchmarks/memory.py                       # ~20 min on 2 cores (the evaluation is most); a table
    python benchmarks/memory.py --tokenizer_steps 20 --sft_steps 4 --out runs/memory
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

STAGES = ("tokenizer", "sft", "evaluation")


def run_stage(stage: str, out: str, tokenizer_steps: int, sft_steps: int) -> None:
    """In the child process: one stage of the quickstart, then its peak memory as one JSON line."""
    from transformers_unicode.training.memory import peak_memory_gb
    from transformers_unicode.training.quickstart import Quickstart, QuickstartArguments

    arguments = QuickstartArguments(
        out=out, resume=True, tokenizer_steps=tokenizer_steps, sft_steps=sft_steps
    )
    quickstart = Quickstart(arguments)
    runner = {
        "tokenizer": quickstart.run_tokenizer,
        "sft": quickstart.run_sft,
        "evaluation": quickstart.run_evaluation,
    }
    payload = runner[stage]()
    quickstart._finish(stage, payload)  # the next stage's process reads this stage's output folder
    print(json.dumps({"stage": stage, "peak_memory_gb": round(peak_memory_gb(), 3)}), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer_steps", type=int, default=20)
    parser.add_argument("--sft_steps", type=int, default=4)
    parser.add_argument("--out", default=None, help="where the stages write (default: a temporary folder)")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_stage(args.child, args.out, args.tokenizer_steps, args.sft_steps)
        return
    out = args.out or tempfile.mkdtemp(prefix="unicode-memory-")
    peaks = {}
    for stage in STAGES:
        command = [sys.executable, os.path.abspath(__file__), "--child", stage, "--out", out,
                   "--tokenizer_steps", str(args.tokenizer_steps), "--sft_steps", str(args.sft_steps)]  # fmt: skip
        lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
        peaks[stage] = json.loads(next(line for line in reversed(lines) if line.startswith("{")))[
            "peak_memory_gb"
        ]
        print(f"{stage:>10}: peak resident memory {peaks[stage]:.2f} GB", flush=True)
    print("\n| stage | peak resident memory (GB), a process of its own |\n|---|---|")
    for stage, peak in peaks.items():
        print(f"| {stage} | {peak:.2f} |")
    print(f"\nwhole job (the largest stage): {max(peaks.values()):.2f} GB; target <= 3 GB (issue 17)")


if __name__ == "__main__":
    main()
