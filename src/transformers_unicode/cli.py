"""`transformers-unicode`: the command line of transformers_unicode.

    transformers-unicode quickstart --out runs/quickstart                    # both stages + evaluation
    transformers-unicode train-tokenizer --output_dir runs/tokenizer        # Stage I on OpenMoji + SmolLM2
    transformers-unicode sft --config examples/sft_openmoji.yaml             # Stage II (TRL SFTTrainer)
    transformers-unicode eval runs/quickstart/model                          # the report of any saved model
    transformers-unicode caption emoji.png                                   # ask about an image
    transformers-unicode generate "Draw the emoji: red apple." --out apple.png
    transformers-unicode reconstruct emoji.png --out round_trip.png         # image -> LLM ids -> image
    transformers-unicode space runs/quickstart/model                         # the Gradio demo
    transformers-unicode ablate --out runs/ablate --only codebook             # the papers' ablation tables

Exit codes: 0 done; 1 the command failed while running (a message says why); 2 bad arguments or a
missing input (a message says which).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_MODEL = os.path.join("runs", "quickstart", "model")

EXAMPLES = {
    "quickstart": (
        "examples:\n"
        "  transformers-unicode quickstart --out runs/quickstart                 # ~25 min on 2 CPU cores\n"
        "  transformers-unicode quickstart --out runs/quickstart --resume        # continue where it stopped\n"
        "  transformers-unicode quickstart --out runs/small --budget_minutes 10  # bound the wall-clock time\n"
        "  transformers-unicode quickstart --out runs/big --tokenizer_steps 5000 --sft_steps 2000  # on a GPU\n"
    ),
    "eval": (
        "examples:\n"
        "  transformers-unicode eval runs/quickstart/model\n"
        "  transformers-unicode eval runs/sft --out runs/sft-eval --question_limit 374 --prompt_limit 32\n"
        "  transformers-unicode eval runs/quickstart/model --inception_path inception-2015-12-05.pt  # adds rFID\n"
    ),
    "caption": (
        "examples:\n"
        "  transformers-unicode caption emoji.png\n"
        "  transformers-unicode caption emoji.png --question 'Which CLDR group is this emoji in?' --model runs/sft\n"
    ),
    "generate": (
        "examples:\n"
        "  transformers-unicode generate 'Draw the emoji: red apple.' --out apple.png\n"
        "  transformers-unicode generate 'Draw the emoji: cat face.' --out cat.png --guidance_scale 3 --seed 7\n"
    ),
    "reconstruct": (
        "examples:\n"
        "  transformers-unicode reconstruct emoji.png --out round_trip.png\n"
        "  transformers-unicode reconstruct emoji.png --out round_trip.png --model runs/tokenizer\n"
    ),
    "space": (
        "examples:\n"
        "  transformers-unicode space runs/quickstart/model\n"
        "  transformers-unicode space runs/quickstart/model --port 7861 --host 0.0.0.0\n"
    ),
    "train-tokenizer": (
        "examples:\n"
        "  transformers-unicode train-tokenizer --output_dir runs/tokenizer\n"
        "  transformers-unicode train-tokenizer --dataset digits --image_size 32 --max_steps 200\n"
        "  transformers-unicode train-tokenizer recipe.yaml\n"
        "  transformers-unicode train-tokenizer --output_dir runs/tokenizer --resume   # continue a stopped run\n"
    ),
    "ablate": (
        "examples:\n"
        "  transformers-unicode ablate --out runs/ablate                                  # every table\n"
        "  transformers-unicode ablate --out runs/ablate --only codebook --steps 1000     # UniCode Table 4\n"
        "  transformers-unicode ablate --out runs/ablate --only rq_depth,mcq_size --minutes_per_row 3\n"
        "  transformers-unicode ablate --out runs/ablate --only decompression --sft_steps 80\n"
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


class UsageError(Exception):
    """Bad arguments or a missing input: exit code 2."""


def _resume_checkpoint(output_dir: str, resume: bool) -> str | None:
    """The checkpoint `--resume` continues from (None without `--resume`); a usage error when there is none."""
    if not resume:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if checkpoint is None:
        raise UsageError(f"--resume found no checkpoint in {output_dir}")
    return checkpoint


def _sets_any(argv: list[str], names: tuple[str, ...]) -> bool:
    """Whether a TrlParser command line, or the YAML file its `--config` names, sets one of `names`."""
    flags = {argument.split("=", 1)[0].lstrip("-") for argument in argv if argument.startswith("--")}
    if flags & set(names):
        return True
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        import yaml

        try:
            with open(argv[argv.index("--config") + 1]) as file:
                config = yaml.safe_load(file)
        except (OSError, yaml.YAMLError):
            return False  # TrlParser reports the file's problem itself
        return isinstance(config, dict) and bool(set(config) & set(names))
    return False


def _sft(argv: list[str]) -> int:
    import torch
    from trl import ModelConfig, SFTConfig, TrlParser

    from .training.stage2 import SFTScriptArguments, run_sft

    parser = TrlParser(
        (SFTScriptArguments, SFTConfig, ModelConfig),
        prog="transformers-unicode sft",
        description="Stage II: instruction tuning with TRL's SFTTrainer (full or LoRA), the visual tokenizer frozen.",
        epilog=EXAMPLES["sft"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--resume", action="store_true", help="Continue from the last checkpoint in --output_dir."
    )
    if not torch.cuda.is_available():  # SFTConfig defaults to bf16 on an accelerator; say CPU up front
        parser.set_defaults(use_cpu=True, bf16=False)
    # TRL's SFTConfig turns activation checkpointing on through transformers' deprecated alias
    # (`gradient_checkpointing=True`), which raises a FutureWarning on every run. Keep TRL's default, under
    # the new name, unless the user set either name (then theirs is used, warning and all).
    user_chose = _sets_any(argv, ("activation_checkpointing", "gradient_checkpointing"))
    if not user_chose:
        parser.set_defaults(gradient_checkpointing=None)
    script_args, training_args, model_args, extra = parser.parse_args_and_config(argv)[:4]
    if not user_chose:
        training_args.activation_checkpointing = training_args.gradient_checkpointing = True
    checkpoint = _resume_checkpoint(training_args.output_dir, bool(getattr(extra, "resume", False)))
    results = run_sft(script_args, training_args, model_args, resume_from_checkpoint=checkpoint)
    if training_args.process_index == 0:
        print(json.dumps({k: v for k, v in results.items() if k != "arguments"}, indent=2))
    return 0


def _train_tokenizer(argv: list[str]) -> int:
    from .training.stage1 import TokenizerTrainerArguments, TokenizerTrainingArguments, train_tokenizer

    parser = _dataclass_parser(
        "train-tokenizer",
        (TokenizerTrainingArguments, TokenizerTrainerArguments),
        "Stage I: train a visual tokenizer whose codebook is an LLM's embedding table.",
    )
    parser.add_argument(
        "--resume", action="store_true", help="Continue from the last checkpoint in --output_dir."
    )
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        model_args, trainer_args = parser.parse_yaml_file(argv[0])
        resume = False
    else:
        model_args, trainer_args, extra = parser.parse_args_into_dataclasses(argv)
        resume = extra.resume
    checkpoint = _resume_checkpoint(trainer_args.output_dir, resume)
    metrics = train_tokenizer(model_args, trainer_args, resume_from_checkpoint=checkpoint)
    print(json.dumps(metrics, indent=2))
    return 0


def _parser(command: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"transformers-unicode {command}",
        description=description,
        epilog=EXAMPLES[command],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _dataclass_parser(command: str, dataclasses, description: str):
    """transformers' `HfArgumentParser`: every dataclass field a flag, with the command's examples."""
    from transformers import HfArgumentParser

    return HfArgumentParser(
        dataclasses,
        prog=f"transformers-unicode {command}",
        description=description,
        epilog=EXAMPLES[command],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _quickstart(argv: list[str]) -> int:
    from .evaluation.suite import EvaluationArguments
    from .training.quickstart import QuickstartArguments, run_quickstart

    parser = _dataclass_parser(
        "quickstart",
        (QuickstartArguments, EvaluationArguments),
        "The main job on the embedded default: Stage I (visual tokenizer, SmolLM2 codebook), Stage II "
        "(LoRA, or full tuning, on the OpenMoji mixture), the evaluation, report.json and PNG sheets.",
    )
    try:
        args, evaluation = parser.parse_args_into_dataclasses(argv)
    except ValueError as error:  # unknown flags, values the dataclasses refuse
        raise UsageError(str(error)) from None
    try:
        report = run_quickstart(args, evaluation)
    except FileExistsError as error:
        raise UsageError(str(error)) from None
    print(json.dumps({"headline": report["headline"], "targets": report["targets"]}, indent=2))
    print(f"report: {os.path.join(args.out, 'report.json')}; model: {report['files']['model']}")
    return 0


def _ablate(argv: list[str]) -> int:
    from .training.ablation import AblationArguments, run_ablation

    parser = _dataclass_parser(
        "ablate",
        AblationArguments,
        "The papers' ablation tables in miniature (UniCode Tables 4, 5 and 10; UniTok Tables 7 and 8): "
        "each row trained under its table's budget, a Markdown table and a PNG in --out.",
    )
    try:
        (args,) = parser.parse_args_into_dataclasses(argv)
    except ValueError as error:  # unknown flags, values the dataclass refuses
        raise UsageError(str(error)) from None
    run_ablation(args)
    print(open(os.path.join(args.out, "ablation.md")).read())
    return 0


def _model_folder(folder: str) -> str:
    if not os.path.isdir(folder):
        hint = " (run `transformers-unicode quickstart` first)" if folder == DEFAULT_MODEL else ""
        raise UsageError(f"No model folder at {folder!r}{hint}; pass --model FOLDER")
    if not os.path.exists(os.path.join(folder, "config.json")):
        raise UsageError(f"{folder!r} has no config.json: it is not a saved model folder")
    return folder


def _load_unicode(folder: str):
    from .loading import ModelFolderError, load_unicode_folder

    try:
        return load_unicode_folder(folder)
    except ModelFolderError as error:
        hint = (
            " (run `transformers-unicode quickstart` first, or pass --model FOLDER)"
            if folder == DEFAULT_MODEL
            else ""
        )
        raise UsageError(f"{error}{hint}") from None


def _open_image(path: str):
    """The image at `path`, opened as the processor opens it; any unusable file is a one-line exit 2."""
    from .processing.image_processing_unicode import conversion_note, open_image

    try:
        image = open_image(path)
    except ValueError as error:
        raise UsageError(f"{error} Give a PNG or JPEG file.") from None
    note = conversion_note(image)
    if note:
        print(f"transformers-unicode: note: {path} is {note}.", file=sys.stderr)
    return image


def _output_path(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"the folder of --out {path!r} does not exist")
    if not path.lower().endswith((".png", ".jpg", ".jpeg", ".webp")):
        raise UsageError(f"--out {path!r} should end in .png, .jpg or .webp")
    return path


def _eval(argv: list[str]) -> int:
    from .evaluation.suite import EvaluationArguments, evaluate_unicode, headline
    from .training.io import atomic_write_json

    parser = _dataclass_parser(
        "eval",
        EvaluationArguments,
        "Evaluate a saved UniCode model folder on the embedded default (held-out OpenMoji): "
        "reconstruction, understanding, generation. Writes report.json and PNG sheets.",
    )
    parser.add_argument("folder", help="A UniCode model folder (e.g. runs/quickstart/model).")
    parser.add_argument(
        "--out", default=None, help="Where report.json and the sheets go (default: FOLDER/eval)."
    )
    try:
        evaluation, extra = parser.parse_args_into_dataclasses(argv)
    except ValueError as error:
        raise UsageError(str(error)) from None
    model, processor = _load_unicode(extra.folder)
    out = extra.out or os.path.join(extra.folder, "eval")
    report = evaluate_unicode(model, processor, evaluation, output_dir=out)
    report["headline"] = headline(report)
    atomic_write_json(os.path.join(out, "report.json"), report)
    print(json.dumps(report["headline"], indent=2))
    print(f"report: {os.path.join(out, 'report.json')}")
    return 0


def _caption(argv: list[str]) -> int:
    from .data.openmoji_conversations import CAPTION_QUESTION
    from .evaluation.stage2 import answer_questions

    parser = _parser("caption", "Answer a question about an image (by default: name the emoji).")
    parser.add_argument("image", help="An image file (PNG, JPEG, ...).")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"A UniCode model folder (default {DEFAULT_MODEL})."
    )
    parser.add_argument("--question", default=CAPTION_QUESTION, help=f"default: {CAPTION_QUESTION!r}")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    args = parser.parse_args(argv)
    if not args.question.strip():
        raise UsageError("--question is empty")
    if args.max_new_tokens < 1:
        raise UsageError("--max_new_tokens must be at least 1")
    image = _open_image(args.image)
    model, processor = _load_unicode(args.model)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": args.question}]}]
    record = {"messages": messages, "images": [image]}
    print(answer_questions(model, processor, [record], max_new_tokens=args.max_new_tokens)[0])
    return 0


def _generate(argv: list[str]) -> int:
    from .evaluation.stage2 import draw

    parser = _parser("generate", "Draw an image from a text prompt (generate with generation_mode='image').")
    parser.add_argument("prompt", help="What to draw, e.g. 'Draw the emoji: red apple.'")
    parser.add_argument("--out", required=True, help="The PNG/JPEG file to write.")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"A UniCode model folder (default {DEFAULT_MODEL})."
    )
    parser.add_argument(
        "--guidance_scale", type=float, default=None, help="Classifier-free guidance (> 1 to use it)."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=4, help="Enlarge the picture this many times (nearest).")
    args = parser.parse_args(argv)
    if not args.prompt.strip():
        raise UsageError("the prompt is empty")
    if args.scale < 1:
        raise UsageError("--scale must be at least 1")
    out = _output_path(args.out)
    model, processor = _load_unicode(args.model)
    image = draw(model, processor, [args.prompt], seed=args.seed, guidance_scale=args.guidance_scale)[0]
    image.resize((image.width * args.scale, image.height * args.scale), resample=0).save(out)
    print(out)
    return 0


def _reconstruct(argv: list[str]) -> int:
    import torch
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from .evaluation.reconstruction import psnr
    from .modeling.configuration_unicode import UniCodeConfig, UniCodeVisualTokenizerConfig
    from .processing.image_processing_unicode import UniCodeImageProcessor

    parser = _parser(
        "reconstruct", "Round-trip an image through the visual tokenizer: image -> LLM ids -> image."
    )
    parser.add_argument("image", help="An image file (PNG, JPEG, ...).")
    parser.add_argument("--out", required=True, help="The PNG/JPEG file to write.")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"A UniCode or Stage I tokenizer folder (default {DEFAULT_MODEL}).",
    )
    parser.add_argument("--scale", type=int, default=4, help="Enlarge the picture this many times (nearest).")
    args = parser.parse_args(argv)
    if args.scale < 1:
        raise UsageError("--scale must be at least 1")
    image = _open_image(args.image)
    out = _output_path(args.out)
    config = AutoConfig.from_pretrained(_model_folder(args.model))
    if isinstance(config, UniCodeConfig):
        processor = AutoProcessor.from_pretrained(args.model)
        image_processor, tokenizer = processor.image_processor, processor.visual_tokenizer
    elif isinstance(config, UniCodeVisualTokenizerConfig):
        tokenizer = AutoModel.from_pretrained(args.model).eval()
        image_processor = UniCodeImageProcessor(
            size={"height": config.image_size, "width": config.image_size}
        )
    else:
        raise UsageError(
            f"{args.model!r} holds a {config.model_type!r} model, not a UniCode model or visual tokenizer"
        )
    pixels = image_processor(image, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        codes = tokenizer.encode(pixels).codes
        reconstruction = tokenizer.decode(codes)
    result = image_processor.postprocess(reconstruction, output_type="pil")[0]
    result.resize((result.width * args.scale, result.height * args.scale), resample=0).save(out)
    print(
        f"{out}: {codes[0].numel()} LLM ids ({tuple(codes.shape[1:])}), PSNR {float(psnr(reconstruction, pixels)[0]):.2f} dB"
    )
    return 0


def _space(argv: list[str]) -> int:
    parser = _parser(
        "space", "Serve the Gradio demo (chat, text-to-image, tokenize) for a UniCode model folder."
    )
    parser.add_argument(
        "folder", nargs="?", default=DEFAULT_MODEL, help=f"A UniCode model folder (default {DEFAULT_MODEL})."
    )
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines.")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="A public gradio.live link.")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a TCP port")
    try:
        from .space import launch_space
    except ImportError as error:
        raise UsageError(
            f"the Space needs gradio: pip install 'transformers-unicode[space]' ({error})"
        ) from None
    from .loading import ModelFolderError

    try:
        launch_space(args.folder, server_name=args.host, server_port=args.port, share=args.share)
    except ModelFolderError as error:
        raise UsageError(str(error)) from None
    return 0


COMMANDS = {
    "quickstart": _quickstart,
    "train-tokenizer": _train_tokenizer,
    "sft": _sft,
    "eval": _eval,
    "caption": _caption,
    "generate": _generate,
    "reconstruct": _reconstruct,
    "space": _space,
    "ablate": _ablate,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="transformers-unicode",
        description="UniCode for the Hugging Face ecosystem.",
        epilog="Run `transformers-unicode COMMAND --help` for a command's options and examples.\n"
        "Exit codes: 0 done; 1 failed while running; 2 bad arguments or a missing input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to run")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(
            f"error: unknown command {argv[0]!r}; choose one of {', '.join(sorted(COMMANDS))}",
            file=sys.stderr,
        )
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except UsageError as error:
        print(f"transformers-unicode {argv[0]}: error: {error}", file=sys.stderr)
        return 2
    except (
        ValueError,
        OSError,
    ) as error:  # bad input, missing files, unreachable hub: a message, not a trace
        print(f"transformers-unicode {argv[0]}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
