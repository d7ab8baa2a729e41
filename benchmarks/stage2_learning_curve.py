"""What Stage II learning costs: held-out group accuracy against the number of Stage II samples seen.

Each configuration tunes a fresh copy of SmolLM2 (assembled with one Stage I tokenizer) through the shipped
path (`build_sft_dataset`, `UniCodeDataCollator`, `UniCodeSFTTrainer`), and is scored on the same held-out
emoji at every point of `--points` (samples seen; 0 = before any tuning). The learning rate is constant after
a warm-up unless `--lr_scheduler_type` names a decaying schedule, which reaches 0 at the last point:

- exact match: the greedy answer is the right group name (`answer_questions`);
- balanced accuracy: exact match averaged per group (chance = 1/9; always answering the majority = 1/9);
- ranking: the right name has the highest log-likelihood among the 9 (`rank_choices`), which shows the
  image being read before the model is confident enough to write the answer.

Configurations are `KIND@LR`: `full` (every LLM weight), `lora` (r=64 on every linear layer), `rows` (only
the LLM's rows of the visual ids: they are the unified codebook, and SmolLM2 ties them to its output layer) and `rows+lora`. `--task group` trains on group questions alone; `--task mixture` on the
quickstart's mixture (captions, groups, drawings, decompression) with the same number of samples.
`--balance_groups` draws the training emoji with their groups' frequencies tempered (Stage II's option of the
same name; 1 = every group equally often); `--natural_tail N` draws the run's last N samples at natural frequencies
instead (a last phase that gives the answers back their real prior). `--sampling` sets the batches (`task_length`, what Stage II ships; `exact_length`, which sorted group questions
by answer; `random`), and `--batch_purity` prints how much of a batch one answer holds under each.

    . .venv/bin/activate
    transformers-unicode train-tokenizer --output_dir runs/tokenizer       # or the quickstart's OUT/tokenizer
    python benchmarks/stage2_learning_curve.py runs/tokenizer --configs full@1e-4 lora@1e-3 \\
        --points 0 160 320 --out runs/curve                               # ~1 min per 8 samples on 2 cores

It writes `OUT/curve.json` after every point (a stopped run keeps what it measured), `OUT/curve.md` (the
table) and `OUT/curve.png` (exact match, balanced and ranking accuracy against samples).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import torch
from PIL import Image, ImageDraw
from transformers import TrainerCallback

from transformers_unicode import UniCodeForCausalLM, UniCodeVisualTokenizer, load_llm, load_openmoji
from transformers_unicode.data.openmoji_conversations import emoji_group_names, openmoji_conversations
from transformers_unicode.evaluation.stage2 import answer_questions, exact_match_accuracy, rank_choices
from transformers_unicode.training.collator import UniCodeDataCollator
from transformers_unicode.training.io import atomic_write_json
from transformers_unicode.training.quickstart import QuickstartArguments
from transformers_unicode.training.stage2 import (
    SFTScriptArguments,
    UniCodeSFTTrainer,
    build_sft_dataset,
    lora_target_modules,
)

KINDS = ("full", "lora", "rows", "rows+lora")
SAMPLINGS = ("task_length", "exact_length", "random")
QUICKSTART_MIXTURE = QuickstartArguments().mixture  # the main job's mixture, whatever it is now


def parse_config(text: str) -> tuple[str, float]:
    kind, _, lr = text.partition("@")
    if kind not in KINDS or not lr:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a configuration is KIND@LR with KIND in {KINDS}, e.g. lora@1e-3"
        )
    return kind, float(lr)


def trainable(model, kind: str):
    """The model with only `kind`'s weights trainable (a peft model for the LoRA kinds)."""
    model.requires_grad_(False)
    if kind.startswith("rows"):
        # Only the rows of the visual ids learn (PEFT's trainable tokens, done with a gradient mask so that
        # SmolLM2's tie of input and output rows stays one tensor): with zero gradient and no weight decay,
        # AdamW leaves every other row exactly where it was.
        weight = model.get_input_embeddings().weight
        rows = torch.zeros(weight.shape[0], 1)
        rows[model.visual_tokenizer.codebook.visual_ids] = 1.0
        weight.requires_grad_(True)
        weight.register_hook(lambda grad: grad * rows.to(grad))
    if "lora" in kind:
        from peft import LoraConfig, get_peft_model

        target = lora_target_modules(model, "all-linear")
        model = get_peft_model(model, LoraConfig(r=64, lora_alpha=128, target_modules=target))
        if kind.startswith("rows"):
            model.get_input_embeddings().weight.requires_grad_(True)  # peft froze everything but LoRA
    if kind == "full":
        model.model.language_model.requires_grad_(True)
    return model


def evaluate(model, processor, questions, groups) -> dict:
    was_training = model.training
    model.eval()
    answers = answer_questions(model, processor, questions, max_new_tokens=8)
    scores = exact_match_accuracy(answers, groups)
    ranked = exact_match_accuracy(rank_choices(model, processor, questions, emoji_group_names()), groups)
    model.train(was_training)
    return {
        "exact_match": scores["accuracy"],
        "balanced_accuracy": scores["balanced_accuracy"],
        "ranking_accuracy": ranked["accuracy"],
        "ranking_balanced_accuracy": ranked["balanced_accuracy"],
        "majority_baseline": scores["majority_baseline"],
        "most_common_answer": max(set(answers), key=answers.count),
    }


class CurvePoints(TrainerCallback):
    """Scores the model whenever the samples seen reach the next point, and saves the curve each time."""

    def __init__(self, points, batch_size, record, save, score, final_score=None):
        self.steps = {point // batch_size: point for point in points if point > 0}
        self.last = max(points)
        self.record, self.save, self.score, self.final_score = record, save, score, final_score
        self.started, self.evaluating, self.losses = time.perf_counter(), 0.0, []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step not in self.steps:
            return
        began = time.perf_counter()
        train_seconds = began - self.started - self.evaluating  # evaluation is not training time
        point = {"samples": self.steps[state.global_step], "train_seconds": train_seconds}
        point["train_loss"] = float(np.mean(self.losses)) if self.losses else None
        point.update(self.score(model))
        if self.final_score is not None and point["samples"] == self.last:
            point["final_held_out"] = self.final_score(model)
        self.record["points"].append(point)
        self.save()
        self.losses = []
        print(json.dumps({"config": self.record["config"], **point}), flush=True)
        self.evaluating += time.perf_counter() - began


def with_exact_lengths(dataset):
    """The mixture with each sample's own length in the `length` column that `group_by_length` sorts by."""
    return dataset.map(lambda batch: {"length": [len(ids) for ids in batch["input_ids"]]}, batched=True)


def batch_purity(trainer, batches: int) -> tuple[float, float]:
    """The mean share of a batch held by its most common answer, and the share of batches holding one answer
    only, over the run's first `batches` batches.

    1/9-ish mixing lets each step contrast images; 1.0 means every step teaches one answer to all its images.
    """
    dataset = trainer.train_dataset
    answers = [
        tuple(i for i, m in zip(ids, mask, strict=True) if m)
        for ids, mask in zip(dataset["input_ids"], dataset["assistant_masks"], strict=True)
    ]
    order = list(trainer._get_train_sampler(dataset))[: batches * trainer.args.per_device_train_batch_size]
    size = trainer.args.per_device_train_batch_size
    shares = []
    for start in range(0, len(order) - size + 1, size):
        batch = [answers[i] for i in order[start : start + size]]
        shares.append(max(batch.count(a) for a in set(batch)) / size)
    return float(np.mean(shares)), float(np.mean(np.asarray(shares) == 1.0))


def draw_curve(runs: list[dict], path: str, majority: float, side: int = 360) -> None:
    """Three panels (exact match, balanced, ranking) of accuracy against samples, one line per run."""
    metrics = ("exact_match", "balanced_accuracy", "ranking_accuracy")
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    width, height, margin = side * len(metrics), side + 40 + 18 * len(runs), 40
    image = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(image)
    top = max((p["samples"] for run in runs for p in run["points"]), default=1) or 1
    for panel, metric in enumerate(metrics):
        left = panel * side + margin
        box = (left, 20, left + side - 2 * margin, side - margin)
        pen.rectangle(box, outline="black")
        pen.text((left, 4), metric.replace("_", " "), fill="black")
        pen.text((left, box[3] + 4), f"0 .. {top} samples", fill="black")

        def xy(samples, value, box=box):
            return (
                box[0] + (box[2] - box[0]) * samples / top,
                box[3] - (box[3] - box[1]) * value,
            )

        baseline = majority if metric != "balanced_accuracy" else 1 / 9
        pen.line([xy(0, baseline), xy(top, baseline)], fill="grey", width=1)
        for index, run in enumerate(runs):
            line = [xy(p["samples"], p[metric]) for p in run["points"]]
            colour = colours[index % len(colours)]
            if len(line) > 1:
                pen.line(line, fill=colour, width=2)
            for x, y in line:
                pen.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    for index, run in enumerate(runs):
        y = side + 20 + 18 * index
        pen.text((margin, y), f"{run['config']}  ({run['task']})", fill=colours[index % len(colours)])
    pen.text((width - 330, side + 20), "grey: majority (exact, ranking) / chance (balanced)", fill="grey")
    image.save(path)


def write_table(runs: list[dict], path: str) -> None:
    lines = [
        "| configuration | task | samples | exact match | balanced | ranking | train loss | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for p in run["points"]:
            loss = "" if p.get("train_loss") is None else f"{p['train_loss']:.3f}"
            lines.append(
                f"| {run['config']} | {run['task']} | {p['samples']} | {p['exact_match']:.1%} | "
                f"{p['balanced_accuracy']:.1%} | {p['ranking_accuracy']:.1%} | {loss} | {p['train_seconds']:.0f} |"
            )
    finals = [(run, p["final_held_out"]) for run in runs for p in run["points"] if "final_held_out" in p]
    if finals:
        lines += [
            "",
            "| configuration | task | samples | held-out emoji | exact match | majority | balanced | ranking |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run, f in finals:
            samples = max(p["samples"] for p in run["points"])
            lines.append(
                f"| {run['config']} | {run['task']} | {samples} | {f['count']} | {f['exact_match']:.1%} | "
                f"{f['majority_baseline']:.1%} | {f['balanced_accuracy']:.1%} | {f['ranking_accuracy']:.1%} |"
            )
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "tokenizer", help="a Stage I visual tokenizer folder (train-tokenizer's --output_dir)"
    )
    parser.add_argument("--configs", nargs="+", type=parse_config, default=[parse_config("lora@1e-3")])
    parser.add_argument("--task", choices=("group", "mixture"), default="group")
    parser.add_argument("--points", nargs="+", type=int, default=[0, 160, 320])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--eval_limit", type=int, default=128, help="held-out emoji scored at every point")
    parser.add_argument(
        "--final_eval_limit",
        type=int,
        default=0,
        help="also score the last point on this many held-out emoji (the same shuffled order; all 374 is the "
        "split the group probe and the judge are scored on); 0 = off",
    )
    parser.add_argument("--warmup_steps", type=int, default=5)
    parser.add_argument(
        "--lr_scheduler_type",
        default="constant_with_warmup",
        help="transformers' schedule names; a decaying one (cosine, linear) reaches 0 at the last point",
    )
    parser.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default="task_length",
        help="the batches: `group_by_length` on the mixture's `length` column (one key a task, what Stage II "
        "ships), `group_by_length` on each sample's exact length (which on group questions is set by the "
        "answer, so it puts one group in each batch; Stage II's sampling until issue 14 found it), or random",
    )
    parser.add_argument(
        "--balance_groups",
        type=float,
        default=0.0,
        help="Stage II's option: draw training emoji of group g in proportion to n_g ** (1 - balance) "
        "(0 = natural frequencies, 1 = every group equally)",
    )
    parser.add_argument(
        "--natural_tail",
        type=int,
        default=0,
        help="the run's last N samples are drawn at natural group frequencies (after the --balance_groups "
        "draw, which makes the rest): batches stay random within each phase, and the phases keep their order",
    )
    parser.add_argument(
        "--mirror_images",
        action="store_true",
        help="Stage II's option: a mirrored copy of every training emoji joins the tasks that do not name it "
        "(twice the distinct images a group)",
    )
    parser.add_argument(
        "--neftune_noise_alpha",
        type=float,
        default=None,
        help="the trainer's NEFTune option: uniform noise on the input embeddings while training (a regulariser; "
        "transformers scales it by alpha / sqrt(the embedding call's length x width))",
    )
    parser.add_argument(
        "--batch_purity",
        action="store_true",
        help="only print how much of each batch one answer holds, for each sampling, and exit",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the trainer's seed (the order of the batches; the data drawn stays)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/stage2_curve")
    parser.add_argument(
        "--redraw", action="store_true", help="only rewrite curve.md and curve.png from OUT/curve.json"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    curve_path = os.path.join(args.out, "curve.json")
    runs = json.load(open(curve_path))["runs"] if os.path.exists(curve_path) else []
    if args.redraw:
        write_table(runs, os.path.join(args.out, "curve.md"))
        draw_curve(
            runs, os.path.join(args.out, "curve.png"), json.load(open(curve_path))["majority_baseline"]
        )
        print(open(os.path.join(args.out, "curve.md")).read())
        return

    llm, llm_tokenizer = load_llm("embedded")
    visual = UniCodeVisualTokenizer.from_pretrained(args.tokenizer)
    base, processor = UniCodeForCausalLM.from_llm(llm, visual, tokenizer=llm_tokenizer, return_processor=True)
    test = load_openmoji("test", size=visual.config.image_size).shuffle(seed=0)
    held_out = test.select(range(min(args.eval_limit, len(test))))
    questions, groups = openmoji_conversations("group", images=held_out), held_out["group"]
    final_score = None
    if args.final_eval_limit:
        final = test.select(range(min(args.final_eval_limit, len(test))))
        final_questions = openmoji_conversations("group", images=final)

        def final_score(model):
            return {"count": len(final), **evaluate(model, processor, final_questions, final["group"])}

    majority = exact_match_accuracy(groups, groups)["majority_baseline"]

    from trl import SFTConfig

    mixture = "group=1" if args.task == "group" else QUICKSTART_MIXTURE
    if not 0 <= args.natural_tail < max(args.points):
        parser.error(f"--natural_tail must lie in [0, {max(args.points)}) (the run's samples)")
    if args.natural_tail and args.sampling != "random":
        parser.error(
            "--natural_tail shuffles each phase and keeps their order: give it with --sampling random"
        )
    script = SFTScriptArguments(
        mixture=mixture,
        num_samples=max(args.points) - args.natural_tail,
        eval_limit=0,
        balance_groups=args.balance_groups,
        mirror_images=args.mirror_images,
    )
    dataset = build_sft_dataset(script, processor, os.path.join(args.out, "dataset_cache"), {})
    if args.natural_tail:
        import datasets

        tail = SFTScriptArguments(
            mixture=mixture, num_samples=args.natural_tail, eval_limit=0, mirror_images=args.mirror_images
        )
        tail = build_sft_dataset(tail, processor, os.path.join(args.out, "dataset_cache_tail"), {})
        # Each phase shuffled by the trainer's seed, then read in order: a sequential sampler keeps the phases.
        dataset = datasets.concatenate_datasets(
            [dataset.shuffle(seed=args.seed), tail.shuffle(seed=args.seed)]
        ).flatten_indices()
    before = None
    for kind, lr in args.configs:
        name = f"{kind}@{lr:g}"
        if args.lr_scheduler_type != "constant_with_warmup":
            name += f" {args.lr_scheduler_type}"
        if args.sampling != "exact_length":  # the runs measured before the choice existed carry no suffix
            name += f" {args.sampling}"
        if args.balance_groups:
            name += f" balance={args.balance_groups:g}"
        if args.natural_tail:
            name += f" natural_tail={args.natural_tail}"
        if args.mirror_images:
            name += " mirrored"
        if args.neftune_noise_alpha:
            name += f" neftune={args.neftune_noise_alpha:g}"
        if args.seed:
            name += f" seed={args.seed}"
        if any(run["config"] == name and run["task"] == args.task for run in runs):
            print(f"{name} ({args.task}): already measured in {curve_path}, skipped")
            continue
        model = trainable(copy.deepcopy(base), kind)
        record = {"config": name, "task": args.task, "points": []}
        runs.append(record)

        def save():
            atomic_write_json(curve_path, {"runs": runs, "majority_baseline": majority})

        if 0 in args.points:
            before = before or evaluate(model, processor, questions, groups)
            record["points"].append({"samples": 0, "train_seconds": 0.0, "train_loss": None, **before})
            save()
        training_args = SFTConfig(
            output_dir=os.path.join(args.out, "trainer"),
            max_steps=max(args.points) // args.batch_size,
            per_device_train_batch_size=args.batch_size,
            learning_rate=lr,
            lr_scheduler_type=args.lr_scheduler_type,
            warmup_steps=args.warmup_steps,
            logging_steps=1,
            save_strategy="no",
            activation_checkpointing=False,  # TRL's default recomputes every layer: a third more time, no gain here
            max_length=None,
            train_sampling_strategy="sequential"
            if args.natural_tail
            else "random"
            if args.sampling == "random"
            else "group_by_length",
            remove_unused_columns=False,
            dataset_kwargs={"skip_prepare_dataset": True},
            use_cpu=True,
            bf16=False,
            report_to="none",
            disable_tqdm=True,
            seed=args.seed,
            neftune_noise_alpha=args.neftune_noise_alpha,
        )
        trainer = UniCodeSFTTrainer(
            model=model,
            args=training_args,
            train_dataset=with_exact_lengths(dataset) if args.sampling == "exact_length" else dataset,
            processing_class=processor,
            data_collator=UniCodeDataCollator.from_processor(processor),
            callbacks=[
                CurvePoints(
                    args.points,
                    args.batch_size,
                    record,
                    save,
                    lambda m: evaluate(m, processor, questions, groups),
                    final_score,
                )
            ],
        )
        if args.batch_purity:
            for sampling in SAMPLINGS:
                trainer.args.train_sampling_strategy = "random" if sampling == "random" else "group_by_length"
                trainer.train_dataset = with_exact_lengths(dataset) if sampling == "exact_length" else dataset
                purity, pure = batch_purity(trainer, training_args.max_steps)
                print(
                    f"{sampling}: a batch's most common answer holds {purity:.1%} of it on average; "
                    f"{pure:.1%} of batches hold one answer only"
                )
            return
        trainer.train()
        del trainer, model
    write_table(runs, os.path.join(args.out, "curve.md"))
    draw_curve(runs, os.path.join(args.out, "curve.png"), majority)
    print(open(os.path.join(args.out, "curve.md")).read())


if __name__ == "__main__":
    main()
