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
    python benchmarks/memory.py --sft_variants 8 4 2 8+ckpt 2+ckpt   # Stage II only, one process per setting
    python benchmarks/memory.py --sft_variants 2+ckpt 2+ckpt+full    # LoRA against full tuning
    python benchmarks/memory.py --one_process                         # the main job as it runs: ~16 min
    python benchmarks/memory.py --leftovers                           # what Stage I leaves for Stage II

`--one_process` runs the three stages one after another in one process, as the quickstart does, twice side by
side: with the memory release the quickstart makes between stages (`release_memory`: `gc.collect()` and glibc's
`malloc_trim`) and without it. A stage's peak there includes what the earlier stages left resident. `--leftovers` lists what that is: the
tensors still alive after Stage I and the release (the LLM's excepted, which Stage II reuses), and how much
the process grew.

`--sft_variants` answers "what holds Stage II's memory, and what does removing it cost": Stage I runs once,
then Stage II once per setting, each in a fresh process from a copy of that run. A setting is the micro-batch
(samples per forward pass; the step accumulates the rest, so the 8 samples a step learns from are the same),
with `+ckpt` for activation checkpointing and `+full` for full tuning instead of LoRA. Each row gives the peak and the seconds per optimizer step. The
first batch of `group_by_length` is the longest (the decompression samples), so even 4 steps meet the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

STAGES = ("tokenizer", "sft", "evaluation")


def variant_arguments(variant: str) -> dict:
    """'4+ckpt' -> the quickstart's Stage II fields: micro-batch 4, activation checkpointing on (LoRA);
    '2+ckpt+full' -> the same with every weight tuned (`--sft_tuning full`)."""
    micro, *flags = variant.split("+")
    if not micro.isdigit() or set(flags) - {"ckpt", "full"}:
        raise ValueError(
            f"Unknown Stage II setting {variant!r}; write MICRO_BATCH, then +ckpt and/or +full if wanted."
        )
    return {
        "sft_micro_batch_size": int(micro),
        "sft_activation_checkpointing": "ckpt" in flags,
        "sft_tuning": "full" if "full" in flags else "lora",
    }


def run_stage(stage: str, out: str, tokenizer_steps: int, sft_steps: int, variant: str | None = None) -> None:
    """In the child process: one stage of the quickstart, then its peak memory as one JSON line."""
    from transformers_unicode.training.memory import peak_memory_gb
    from transformers_unicode.training.quickstart import Quickstart, QuickstartArguments

    extra = variant_arguments(variant) if variant else {}
    arguments = QuickstartArguments(
        out=out, resume=True, tokenizer_steps=tokenizer_steps, sft_steps=sft_steps, **extra
    )
    quickstart = Quickstart(arguments)
    runner = {
        "tokenizer": quickstart.run_tokenizer,
        "sft": quickstart.run_sft,
        "evaluation": quickstart.run_evaluation,
    }
    payload = runner[stage]()
    quickstart._finish(stage, payload)  # the next stage's process reads this stage's output folder
    line = {"stage": stage, "peak_memory_gb": round(peak_memory_gb(), 3)}
    if stage == "sft":
        line["seconds_per_step"] = round(payload["train"]["train_runtime"] / sft_steps, 2)
    print(json.dumps(line), flush=True)


def run_all(out: str, tokenizer_steps: int, sft_steps: int, release: bool) -> None:
    """In the child process: the whole quickstart in this one process; each stage's peak as one JSON line."""
    from transformers_unicode.training import quickstart as quickstart_module
    from transformers_unicode.training.quickstart import Quickstart, QuickstartArguments

    if not release:
        quickstart_module.release_memory = lambda: False
    arguments = QuickstartArguments(out=out, tokenizer_steps=tokenizer_steps, sft_steps=sft_steps)
    report = Quickstart(arguments).run()
    print(json.dumps({"peak_memory_gb": report["peak_memory_gb"]}), flush=True)


def one_process(out: str, args) -> None:
    print("The three stages in one process (GB of peak resident memory, each stage's own window):\n")
    print("| between stages | Stage I | Stage II | evaluation | whole job |\n|---|---|---|---|---|")
    for release in (True, False):
        folder = os.path.join(out, "release" if release else "no-release")
        shutil.rmtree(folder, ignore_errors=True)
        peaks = child("all", folder, args, release=release)["peak_memory_gb"]
        print(
            f"| {'release_memory()' if release else 'nothing'} | {peaks['tokenizer']:.2f} | {peaks['sft']:.2f} | "
            f"{peaks['evaluation']:.2f} | {max(peaks.values()):.2f} |",
            flush=True,
        )


def leftovers(out: str, tokenizer_steps: int) -> None:
    """What Stage I leaves resident for Stage II, in this process: the tensors still alive, and the growth.

    The quickstart keeps the LLM loaded for Stage II, so it is loaded (and counted) first; then Stage I runs
    and `release_memory()` is called, as between the quickstart's stages. Every tensor the garbage collector
    still tracks that is not one of the LLM's is listed.
    """
    import gc
    import warnings

    import torch

    from transformers_unicode.training.memory import release_memory, resident_memory_gb
    from transformers_unicode.training.quickstart import Quickstart, QuickstartArguments

    quickstart = Quickstart(QuickstartArguments(out=out, tokenizer_steps=tokenizer_steps))
    llm, _ = quickstart.llm()
    release_memory()
    loaded = resident_memory_gb()
    llm_tensors = {id(t) for t in [*llm.parameters(), *llm.buffers()]}
    import transformers_unicode.training.stage1  # noqa: F401  (its imports: datasets, diffusers' blocks, Trainer)
    from transformers_unicode.data.openmoji import load_openmoji

    load_openmoji("train", size=quickstart.args.image_size)  # the render cache Stage I reads, opened once
    release_memory()
    imported = resident_memory_gb()
    quickstart.run_tokenizer()
    release_memory()
    after = resident_memory_gb()
    with warnings.catch_warnings():  # isinstance() touches torch.distributed's deprecated `reduce_op` proxy
        warnings.simplefilter("ignore", FutureWarning)
        alive = [o for o in gc.get_objects() if isinstance(o, torch.Tensor) and id(o) not in llm_tensors]
    megabytes = sum(t.nbytes for t in alive) / 1e6
    print(f"resident with the LLM loaded: {loaded:.2f} GB")
    print(
        f"  + Stage I's modules imported and its data set opened: {imported:.2f} GB (+{imported - loaded:.2f})"
    )
    print(
        f"  + Stage I ({tokenizer_steps} steps), then the release: {after:.2f} GB (+{after - imported:.2f})"
    )
    print(f"tensors alive that are not the LLM's: {len(alive)}, {megabytes:.1f} MB in all")
    for tensor in sorted(alive, key=lambda t: -t.nbytes)[:10]:
        print(f"  {tuple(tensor.shape)} {tensor.dtype}: {tensor.nbytes / 1e6:.2f} MB")


def child(stage: str, out: str, args, variant: str | None = None, release: bool = True) -> dict:
    """One stage in a fresh process; its JSON line."""
    command = [sys.executable, os.path.abspath(__file__), "--child", stage, "--out", out,
               "--tokenizer_steps", str(args.tokenizer_steps), "--sft_steps", str(args.sft_steps)]  # fmt: skip
    if variant:
        command += ["--variant", variant]
    if not release:
        command += ["--no_release"]
    lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    return json.loads(next(line for line in reversed(lines) if line.startswith("{")))


def sft_variants(out: str, args) -> None:
    base = os.path.join(out, "stage1")
    if not os.path.isdir(os.path.join(base, "tokenizer")):
        child("tokenizer", base, args)
    print(f"Stage II settings, {args.sft_steps} steps of 8 samples each:\n")
    print(
        "| tuning | micro-batch | activation checkpointing | peak resident memory | seconds per step |\n"
        "|---|---|---|---|---|"
    )
    for variant in args.sft_variants:
        folder = os.path.join(out, f"sft-{variant}")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(base, folder)
        result = child("sft", folder, args, variant)
        fields = variant_arguments(variant)
        print(
            f"| {fields['sft_tuning']} | {fields['sft_micro_batch_size']} | "
            f"{'on' if fields['sft_activation_checkpointing'] else 'off'} | "
            f"{result['peak_memory_gb']:.2f} GB | {result['seconds_per_step']:.1f} |",
            flush=True,
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer_steps", type=int, default=20)
    parser.add_argument("--sft_steps", type=int, default=4)
    parser.add_argument("--out", default=None, help="where the stages write (default: a temporary folder)")
    parser.add_argument(
        "--sft_variants", nargs="+", metavar="MICRO[+ckpt]", help="Stage II only, once per setting (above)"
    )
    parser.add_argument("--one_process", action="store_true", help="all stages in one process (above)")
    parser.add_argument(
        "--leftovers", action="store_true", help="what Stage I leaves resident for Stage II, in one process"
    )
    parser.add_argument("--child", choices=(*STAGES, "all"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--no_release", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "all":
        run_all(args.out, args.tokenizer_steps, args.sft_steps, release=not args.no_release)
        return
    if args.child:
        run_stage(args.child, args.out, args.tokenizer_steps, args.sft_steps, args.variant)
        return
    out = args.out or tempfile.mkdtemp(prefix="unicode-memory-")
    if args.sft_variants:
        sft_variants(out, args)
        return
    if args.one_process:
        one_process(out, args)
        return
    if args.leftovers:
        leftovers(os.path.join(out, "leftovers"), args.tokenizer_steps)
        return
    peaks = {}
    for stage in STAGES:
        peaks[stage] = child(stage, out, args)["peak_memory_gb"]
        print(f"{stage:>10}: peak resident memory {peaks[stage]:.2f} GB", flush=True)
    print("\n| stage | peak resident memory (GB), a process of its own |\n|---|---|")
    for stage, peak in peaks.items():
        print(f"| {stage} | {peak:.2f} |")
    print(f"\nwhole job (the largest stage): {max(peaks.values()):.2f} GB; target <= 3 GB (issue 17)")


if __name__ == "__main__":
    main()
