"""`transformers-unicode`: the command line of transformers_unicode.

    transformers-unicode train-tokenizer --output_dir runs/tokenizer        # Stage I on OpenMoji + SmolLM2
    transformers-unicode train-tokenizer recipe.yaml                         # the same from a YAML file
    transformers-unicode sft --config examples/sft_openmoji.yaml             # Stage II (TRL SFTTrainer)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXAMPLES = {
    "train-tokenizer": (
        "examples:\n"
        "  transformers-unicode train-tokenizer --output_dir runs/tokenizer\n"
        "  transformers-unicode train-tokenizer --dataset digits --image_size 32 --max_steps 200\n"
        "  transformers-unicode train-tokenizer recipe.yaml\n"
        "  transformers-unicode train-tokenizer --output_dir runs/tokenizer --resume   # continue a stopped run\n"
    ),
    "sft": (
        "examples:\n"
        "  transformers-unicode sft --config examples/sft_openmoji.yaml\n"
        "  transformers-unicode sft --config examples/sft_openmoji.yaml --max_steps 20 --output_dir runs/try\n"
        "  transformers-unicode sft --model_name_or_path runs/unicode --dataset llava.json --image_folder images/ \\\n"
        "      --use_peft --lora_r 16 --output_dir runs/sft\n"
        "  transformers-unicode sft --config examples/sft_openmoji.yaml --resume   # continue a stopped run\n"
        "  accelerate launch --config_file examples/accelerate/ddp.yaml -m transformers_unicode.cli sft --config ...\n"
    ),
}


def _sft(argv: list[str]) -> int:
    import torch
    from transformers.trainer_utils import get_last_checkpoint
    from trl import ModelConfig, SFTConfig, TrlParser

    from .training.stage2 import SFTScriptArguments, run_sft

    parser = TrlParser(
        (SFTScriptArguments, SFTConfig, ModelConfig),
        prog="transformers-unicode sft",
        description="Stage II: instruction tuning with TRL's SFTTrainer (full or LoRA), the visual tokenizer frozen.",
        epilog=EXAMPLES["sft"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--resume", action="store_true", help="Continue from the last checkpoint in --output_dir.")
    if not torch.cuda.is_available():  # SFTConfig defaults to bf16 on an accelerator; say CPU up front
        parser.set_defaults(use_cpu=True, bf16=False)
    script_args, training_args, model_args, extra = parser.parse_args_and_config(argv)[:4]
    resume = bool(getattr(extra, "resume", False))
    output_dir = training_args.output_dir
    checkpoint = get_last_checkpoint(output_dir) if resume and os.path.isdir(output_dir) else None
    if resume and checkpoint is None:
        print(f"error: --resume found no checkpoint in {output_dir}", file=sys.stderr)
        return 2
    results = run_sft(script_args, training_args, model_args, resume_from_checkpoint=checkpoint)
    if training_args.process_index == 0:
        print(json.dumps({k: v for k, v in results.items() if k != "arguments"}, indent=2))
    return 0


def _train_tokenizer(argv: list[str]) -> int:
    from transformers import HfArgumentParser
    from transformers.trainer_utils import get_last_checkpoint

    from .training.stage1 import TokenizerTrainerArguments, TokenizerTrainingArguments, train_tokenizer

    parser = HfArgumentParser(
        (TokenizerTrainingArguments, TokenizerTrainerArguments),
        prog="transformers-unicode train-tokenizer",
        description="Stage I: train a visual tokenizer whose codebook is an LLM's embedding table.",
        epilog=EXAMPLES["train-tokenizer"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--resume", action="store_true", help="Continue from the last checkpoint in --output_dir.")
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        model_args, trainer_args = parser.parse_yaml_file(argv[0])
        resume = False
    else:
        model_args, trainer_args, extra = parser.parse_args_into_dataclasses(argv)
        resume = extra.resume
    output_dir = trainer_args.output_dir
    checkpoint = get_last_checkpoint(output_dir) if resume and os.path.isdir(output_dir) else None
    if resume and checkpoint is None:
        print(f"error: --resume found no checkpoint in {trainer_args.output_dir}", file=sys.stderr)
        return 2
    metrics = train_tokenizer(model_args, trainer_args, resume_from_checkpoint=checkpoint)
    print(json.dumps(metrics, indent=2))
    return 0


COMMANDS = {"train-tokenizer": _train_tokenizer, "sft": _sft}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="transformers-unicode",
        description="UniCode for the Hugging Face ecosystem.",
        epilog="Run `transformers-unicode COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to run")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"error: unknown command {argv[0]!r}; choose one of {', '.join(sorted(COMMANDS))}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (ValueError, OSError) as error:  # bad input, missing files, unreachable hub: a message, not a trace
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
