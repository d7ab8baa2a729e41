"""The whole evaluation of a UniCode model on the embedded default, as one report (and PNG sheets).

    transformers-unicode eval runs/quickstart/model

Reconstruction (PSNR, SSIM, codebook usage, rFID when Inception weights are on disk), understanding
(exact match and VQA accuracy on held-out CLDR group and subgroup questions; naming training emoji) and
generation (retrieval of the prompted emoji, or of its group for held-out names, among every real render;
diversity across seeds). Every number comes from a local `evaluate` module (`load_metric`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import torch
from PIL import Image
from transformers.utils import logging

from .metrics import load_metric
from .sheets import contact_sheet

logger = logging.get_logger(__name__)


@dataclass
class EvaluationArguments:
    """How much of the embedded default to evaluate on (held-out = the 374 emoji neither stage saw)."""

    reconstruction_limit: int | None = field(
        default=None, metadata={"help": "Held-out images to reconstruct (default: all 374)."}
    )
    question_limit: int = field(
        default=128, metadata={"help": "Held-out emoji asked their CLDR group and subgroup."}
    )
    caption_limit: int = field(default=64, metadata={"help": "Training emoji asked to name themselves."})
    prompt_limit: int = field(default=8, metadata={"help": "Training names, and held-out names, drawn."})
    diversity_prompts: int = field(
        default=4, metadata={"help": "Prompts drawn with several seeds; 0 = off (no diversity figure)."}
    )
    diversity_seeds: int = field(
        default=3,
        metadata={
            "help": "Samples per diversity prompt (drawn in the same batches; rows sample independently)."
        },
    )
    class_conditional_per_group: int = field(
        default=2,
        metadata={
            "help": "Drawings per CLDR group for 'Draw an emoji from the group ...', judged by a pixel classifier "
            "fit on real renders (GroupJudge); 0 = off."
        },
    )
    guidance_scale: float | None = field(
        default=None, metadata={"help": "Classifier-free guidance for drawing (None: off)."}
    )
    inception_path: str | None = field(
        default=None,
        metadata={"help": "TorchScript Inception (inception-2015-12-05.pt) for rFID; skipped without it."},
    )
    language_tokens: int = field(
        default=20480,
        metadata={
            "help": "Tokens of held-out English text (Python's reference pages) scored for perplexity; 0 = off."
        },
    )
    batch_size: int = field(default=16, metadata={"help": "Questions answered per generate call."})
    draw_batch_size: int = field(
        default=32,
        metadata={
            "help": "Drawings per generate call; the evaluation's drawings go in as few calls as this allows "
            "(on a CPU a step for 32 rows costs ~2-2.5x one for 2: benchmarks/decode_step.py)."
        },
    )
    sheet_size: int = field(default=16, metadata={"help": "Images on each PNG sheet."})
    draw_seed: int = field(default=0, metadata={"help": "Sampling seed for drawing."})


def _answers(model, processor, task: str, images, batch_size: int, desc: str) -> list[str]:
    from ..data.openmoji_conversations import openmoji_conversations
    from .stage2 import answer_questions

    questions = openmoji_conversations(task, images=images)
    return answer_questions(model, processor, questions, max_new_tokens=16, batch_size=batch_size, desc=desc)


def _text_scores(predictions: list[str], references: list[str]) -> dict:
    scores = load_metric("exact_match").compute(predictions=predictions, references=references)
    scores.update(load_metric("vqa_accuracy").compute(predictions=predictions, references=references))
    scores["examples"] = [[r, p] for r, p in zip(references[:8], predictions[:8], strict=True)]
    return scores


@torch.no_grad()
def evaluate_reconstruction_metrics(
    processor, images: list[Image.Image], inception_path: str | None
) -> tuple[dict, list]:
    """PSNR, SSIM, codebook usage and rFID of the processor's own round trip: image -> LLM ids -> image."""
    visual_tokenizer = processor.visual_tokenizer
    reconstructions, used = [], []
    for begin in range(0, len(images), 64):
        pixels = processor.image_processor(images[begin : begin + 64], return_tensors="pt")["pixel_values"]
        codes = visual_tokenizer.encode(pixels.to(visual_tokenizer.device)).codes
        used.append(codes.flatten())
        reconstructions += processor.image_processor.postprocess(
            visual_tokenizer.decode(codes), output_type="pil"
        )
    originals = [image.convert("RGB") for image in images]
    distinct = torch.cat(used).unique().numel()
    metrics = {
        **load_metric("psnr").compute(predictions=reconstructions, references=originals),
        **load_metric("ssim").compute(predictions=reconstructions, references=originals),
        "codebook_usage": distinct / visual_tokenizer.codebook.num_codes,
        "distinct_codes": distinct,
        "count": len(images),
    }
    if inception_path:
        metrics["rfid"] = load_metric("frechet_inception_distance").compute(
            predictions=reconstructions, references=originals, inception_path=inception_path
        )["frechet_inception_distance"]
    else:
        metrics["rfid"] = None
        metrics["rfid_skipped"] = (
            "no Inception weights given: pass --inception_path FILE (a TorchScript inception-2015-12-05.pt) "
            "to compute rFID; nothing is downloaded."
        )
    return metrics, reconstructions


@torch.no_grad()
def evaluate_unicode(
    model, processor, args: EvaluationArguments | None = None, output_dir: str | None = None
) -> dict:
    """Every metric of the report on the embedded default; PNG sheets into `output_dir` when given."""
    from ..data.openmoji import load_openmoji
    from ..data.openmoji_conversations import TEXT_TO_IMAGE_PROMPT
    from .stage2 import draw

    args = args or EvaluationArguments()
    if processor.visual_tokenizer is None:
        raise ValueError("The processor has no visual tokenizer; load it from a UniCode model folder.")
    was_training = model.training
    model.eval()
    size = processor.visual_tokenizer.config.image_size
    seconds: dict[str, float] = {}
    report: dict = {"arguments": asdict(args), "seconds": seconds}

    started = time.perf_counter()
    test = load_openmoji(split="test", size=size)
    train = load_openmoji(split="train", size=size)
    test_images, train_images = list(test["image"]), list(train["image"])
    seconds["data"] = time.perf_counter() - started

    # Reconstruction, on held-out emoji.
    started = time.perf_counter()
    limit = len(test) if args.reconstruction_limit is None else min(args.reconstruction_limit, len(test))
    report["reconstruction"], reconstructions = evaluate_reconstruction_metrics(
        processor, test_images[:limit], args.inception_path
    )
    seconds["reconstruction"] = time.perf_counter() - started

    # Understanding: held-out group and subgroup questions; training emoji named.
    started = time.perf_counter()
    held_out = test.shuffle(seed=0).select(range(min(args.question_limit, len(test))))
    named = train.shuffle(seed=0).select(range(min(args.caption_limit, len(train))))
    understanding = {}
    for task, records, column in (
        ("group", held_out, "group"),
        ("subgroup", held_out, "subgroup"),
        ("caption", named, "name"),
    ):
        answers = _answers(model, processor, task, records, args.batch_size, desc=f"{task} questions")
        understanding[task] = _text_scores(answers, list(records[column]))
    # Ranking: is the right group the likeliest of the nine? It shows reading before greedy answers do.
    from ..data.openmoji_conversations import GROUP_TO_IMAGE_PROMPT, emoji_group_names, openmoji_conversations
    from .stage2 import exact_match_accuracy, rank_choices

    ranked = rank_choices(
        model, processor, openmoji_conversations("group", images=held_out), emoji_group_names()
    )
    ranking = exact_match_accuracy(ranked, list(held_out["group"]))
    understanding["group"]["ranking_accuracy"] = ranking["accuracy"]
    understanding["group"]["ranking_balanced_accuracy"] = ranking["balanced_accuracy"]
    sheet_records = test.shuffle(seed=0).select(range(min(args.sheet_size, len(test))))
    held_out_captions = _answers(
        model, processor, "caption", sheet_records, args.batch_size, "held-out captions"
    )
    report["understanding"] = understanding
    seconds["understanding"] = time.perf_counter() - started

    # Generation: training names (is the emoji itself among the nearest renders?) and held-out names (its group?).
    started = time.perf_counter()
    bank = train_images + test_images
    drawn_train = train.shuffle(seed=1).select(range(min(args.prompt_limit, len(train))))
    drawn_test = test.shuffle(seed=1).select(range(min(args.prompt_limit, len(test))))
    prompts_train = [TEXT_TO_IMAGE_PROMPT.format(name=n) for n in drawn_train["name"]]
    prompts_test = [TEXT_TO_IMAGE_PROMPT.format(name=n) for n in drawn_test["name"]]
    repeated = range(min(args.diversity_prompts, len(prompts_train)))
    again = [index for index in repeated for _ in range(args.diversity_seeds - 1)]
    requested_groups = [g for g in emoji_group_names() for _ in range(args.class_conditional_per_group)]
    # Every drawing in as few `draw` calls as draw_batch_size allows: on a CPU a decoding step at small batch is
    # bound by reading the LLM's weights, so a step for 32 rows costs ~2-2.5x one for 2 (benchmarks/
    # decode_step.py), not 16x. Rows of a batch sample independently, which is what the diversity repeats need.
    parts = {
        "train": prompts_train,
        "test": prompts_test,
        "again": [prompts_train[index] for index in again],
        "class": [GROUP_TO_IMAGE_PROMPT.format(group=group) for group in requested_groups],
    }
    drawings = draw(
        model,
        processor,
        [prompt for prompts in parts.values() for prompt in prompts],
        seed=args.draw_seed,
        guidance_scale=args.guidance_scale,
        batch_size=args.draw_batch_size,
        desc="drawing",
    )
    drawn = {}
    for name, prompts in parts.items():
        drawn[name], drawings = drawings[: len(prompts)], drawings[len(prompts) :]
    images_train, images_test = drawn["train"], drawn["test"]
    retrieval = load_metric("retrieval_accuracy")

    def retrieve(drawn, records, column: str) -> dict:
        """Is the drawing's label (`column` of the record it names) among its nearest real renders?"""
        return {
            **retrieval.compute(
                predictions=drawn,
                references=list(records[column]),
                candidates=bank,
                candidate_labels=list(train[column]) + list(test[column]),
            ),
            "candidates": len(bank),
        }

    generation = {
        "training_prompts": {
            **retrieve(images_train, drawn_train, "emoji"),
            **load_metric("psnr").compute(predictions=images_train, references=list(drawn_train["image"])),
        },
        "held_out_prompts_group": retrieve(images_test, drawn_test, "group"),
    }
    # What a drawing's PSNR means: a blank canvas scored against the same targets.
    blank = [Image.new("RGB", images_train[0].size, "white")] * len(images_train)
    generation["training_prompts"]["white_canvas_psnr"] = load_metric("psnr").compute(
        predictions=blank, references=list(drawn_train["image"])
    )["psnr"]
    # Diversity: the same prompts sampled again (in the same batches: rows sample independently). It needs a
    # prompt drawn at least twice; with --diversity_prompts 0 (or one seed) there is nothing to compare.
    if again:
        varied = images_train[: len(repeated)] + drawn["again"]
        prompt_ids = list(repeated) + again
        generation["diversity"] = {
            **load_metric("image_diversity").compute(predictions=varied, references=prompt_ids),
            "prompts": len(repeated),
            "samples_per_prompt": args.diversity_seeds,
        }
    class_drawings, class_captions = [], []
    if args.class_conditional_per_group:
        class_drawings = drawn["class"]
        generation["class_conditional"] = _class_conditional(
            class_drawings, requested_groups, train, test, train_images, test_images
        )
        class_captions = [
            f"Draw an emoji from the group {group}. (judge: {verdict})"
            for group, verdict in zip(
                requested_groups, generation["class_conditional"]["judged_as"], strict=True
            )
        ]
    report["generation"] = generation
    seconds["generation"] = time.perf_counter() - started

    if args.language_tokens:
        from .language import language_perplexity

        started = time.perf_counter()
        report["language"] = language_perplexity(model, processor.tokenizer, max_tokens=args.language_tokens)
        seconds["language"] = time.perf_counter() - started

    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        n = args.sheet_size
        contact_sheet(
            [
                ([o, r], name)
                for o, r, name in zip(test_images[:n], reconstructions[:n], test["name"][:n], strict=False)
            ],
            title="Held-out emoji: original | reconstruction through LLM ids",
        ).save(os.path.join(output_dir, "reconstructions.png"))
        contact_sheet(
            [
                ([image], prompt)
                for image, prompt in zip(
                    images_train + images_test + class_drawings,
                    prompts_train + prompts_test + class_captions,
                    strict=True,
                )
            ],
            title="Drawn from prompts (training names; held-out names; then each CLDR group, with the judge's verdict)",
        ).save(os.path.join(output_dir, "generations.png"))
        contact_sheet(
            [
                ([image], f"true: {name}\nmodel: {answer or '(empty)'}")
                for image, answer, name in zip(
                    sheet_records["image"], held_out_captions, sheet_records["name"], strict=True
                )
            ],
            title="Held-out emoji and the model's captions",
            caption_lines=6,
        ).save(os.path.join(output_dir, "captions.png"))
    model.train(was_training)
    return report


def _class_conditional(drawings, requested, train, test, train_images, test_images) -> dict:
    """The paper's class-conditional protocol in miniature: draw each CLDR group, let an outside judge say which
    group each drawing looks like. The judge's own held-out accuracy on real renders comes with it."""
    from .judge import JUDGE_MIN_ACCURACY, GroupJudge

    judge = GroupJudge().fit(train_images, list(train["group"]))
    judged = judge.score(test_images, list(test["group"]))
    return {
        **judge.class_conditional(drawings, requested),
        "judge_held_out_accuracy": judged["accuracy"],
        "judge_held_out_balanced_accuracy": judged["balanced_accuracy"],
        "judge_counts": judged["accuracy"] >= JUDGE_MIN_ACCURACY,
    }


def headline(report: dict) -> dict:
    """The numbers a reader looks for first (the quickstart's targets)."""
    return {
        "held_out_psnr": report["reconstruction"]["psnr"],
        "held_out_ssim": report["reconstruction"]["ssim"],
        "codebook_usage": report["reconstruction"]["codebook_usage"],
        "held_out_group_accuracy": report["understanding"]["group"]["exact_match"],
        "held_out_group_balanced_accuracy": report["understanding"]["group"]["balanced_accuracy"],
        "held_out_group_ranking_accuracy": report["understanding"]["group"]["ranking_accuracy"],
        "held_out_group_majority_baseline": report["understanding"]["group"]["majority_baseline"],
        "generation_top5_training_prompts": report["generation"]["training_prompts"]["top5"],
        "language_perplexity": report.get("language", {}).get("perplexity"),
        "class_conditional_in_group": report["generation"]
        .get("class_conditional", {})
        .get("in_requested_group"),
        "judge_held_out_accuracy": report["generation"]
        .get("class_conditional", {})
        .get("judge_held_out_accuracy"),
    }


__all__ = ["EvaluationArguments", "evaluate_reconstruction_metrics", "evaluate_unicode", "headline"]
