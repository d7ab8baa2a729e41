"""Flat against depth head at equal Stage II time (issue 16): held-out code loss and class-conditional drawing.

A measurement script, not a test: it prints a table and never fails on the figures.

    . .venv/bin/activate
    python benchmarks/depth_head_quality.py --tokenizer runs/tokenizer --minutes 10   # SmolLM2, ~25 minutes
    python benchmarks/depth_head_quality.py --tiny --minutes 0.2                      # checks the script
    python benchmarks/depth_head_quality.py --heads depth --tuning full --lr 1e-4 --depth-head-lr 1e-3 --steps 120
                                                    # the depth head's own learning rate (issue 14)

What it measures. For each head, the same Stage I tokenizer (`--tokenizer`, a `train-tokenizer` folder) is
assembled with SmolLM2 (`from_llm(..., image_head=...)`), and Stage II runs through `run_sft` on OpenMoji
drawings (`text_to_image` and `group_to_image`), with the quickstart's LoRA (r 64 on every linear layer of the
LLM, lr 3e-4, batches of 8), for the same wall-clock budget (`--minutes`, counted from the first step; a
callback stops the run). Then both are scored on the same held-out drawings (OpenMoji's test split, written
as `text_to_image` answers): the mean negative log-likelihood of the image's h*w*D codes given the prompt and
the codes before them (teacher forcing), with the softmax over the K visual codes for both heads (the flat
head's logits restricted to the visual ids, as the span processor restricts them in generation). The flat
head's NLL over the whole vocabulary is printed beside it.

Class-conditional drawing, the evaluation's protocol: each head draws `--per-group` images for each of the 9
CLDR groups ("Draw an emoji from the group ...", the `group_to_image` prompt it was tuned on; the same sampling
seed for both heads), and the evaluation's `GroupJudge` (a pixel classifier fit on the real renders of the
training emoji, which never saw either model) says which group each drawing looks like. The judge's own
held-out accuracy on real renders is printed beside it (it counts at >= 75 %). `--per-group 0` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from _machine import cpu_model, package_versions

from transformers_unicode import PACKED_CODE_OFFSET
from transformers_unicode.training.callbacks import TimeBudgetCallback


class BudgetFromFirstStep(TimeBudgetCallback):
    """The quickstart's time budget, counted from the start of training (not from the dataset build)."""

    def __init__(self, seconds: float):
        super().__init__(deadline=float("inf"))
        self.seconds = seconds

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.clock()
        self.deadline = self.started + self.seconds


def build(args, image_head: str):
    from transformers_unicode import UniCodeForCausalLM, UniCodeVisualTokenizer, load_llm

    if args.tiny:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
        from conftest import tiny_unicode

        return tiny_unicode(image_head=image_head)
    llm, tokenizer = load_llm("embedded")
    visual = UniCodeVisualTokenizer.from_pretrained(args.tokenizer)
    return UniCodeForCausalLM.from_llm(
        llm, visual, tokenizer=tokenizer, return_processor=True, image_head=image_head
    )


def train(model, processor, args, output_dir: str, image_head: str) -> dict:
    from trl import ModelConfig, SFTConfig

    from transformers_unicode.training.stage2 import SFTScriptArguments, run_sft

    budget = BudgetFromFirstStep(60 * args.minutes)
    script = SFTScriptArguments(
        mixture="text_to_image=1,group_to_image=1",
        num_samples=args.samples,
        train_limit=args.train_limit,
        eval_limit=0,
        merge_lora=True,
        depth_head_learning_rate=args.depth_head_lr if image_head == "depth" else None,  # flat has none
    )
    config = SFTConfig(
        output_dir=output_dir,
        max_steps=args.steps or 10**6,  # or the budget stops it
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        max_length=None,
        disable_tqdm=True,
        seed=0,
        data_seed=0,
    )
    tuning = ModelConfig(
        use_peft=args.tuning == "lora", lora_r=64, lora_alpha=128, lora_target_modules=["all-linear"]
    )
    out = {}
    results = run_sft(
        script, config, tuning, model=model, processor=processor, callbacks=[budget], trainer_out=out
    )
    steps = out["trainer"].state.global_step
    history = [(r["step"], r["loss"]) for r in out["trainer"].state.log_history if "loss" in r]
    return {"steps": steps, "seconds": results["train"]["seconds"], "loss_history": history}


@torch.no_grad()
def held_out_code_nll(model, processor, image_head: str, images: int, batch_size: int) -> dict:
    """Mean NLL per code of held-out drawings (softmax over the K codes; the flat head's over V too)."""
    from transformers_unicode.data.openmoji import load_openmoji
    from transformers_unicode.data.openmoji_conversations import openmoji_conversations
    from transformers_unicode.training.collator import UniCodeDataCollator
    from transformers_unicode.training.sft_data import tokenize_conversations

    size = processor.visual_tokenizer.config.image_size
    test = load_openmoji(split="test", size=size, limit=images)
    samples = tokenize_conversations(
        openmoji_conversations("text_to_image", images=test), processor, image_head=image_head
    )
    collate = UniCodeDataCollator.from_processor(processor, image_head=image_head)
    codebook = model.visual_tokenizer.codebook
    total, total_vocab, count = 0.0, 0.0, 0
    model.eval()
    for begin in range(0, len(samples), batch_size):
        batch = collate([samples[i] for i in range(begin, min(begin + batch_size, len(samples)))])
        hidden = model.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        targets, before = batch["labels"][:, 1:], hidden[:, :-1]
        if image_head == "flat":
            # The codes are the targets inside the written image span (a text id may be a visual id too).
            is_code = processor.image_span_mask(batch["input_ids"])[:, 1:].bool() & (targets != -100)
            logits = model.lm_head(before[is_code])  # (n, V)
            codes = targets[is_code]
            total_vocab += float(F.cross_entropy(logits, codes, reduction="sum"))
            total += float(
                F.cross_entropy(logits[:, codebook.visual_ids], codebook.rows_of(codes), reduction="sum")
            )
            count += codes.numel()
        else:
            written = targets >= PACKED_CODE_OFFSET  # the packed ids of the written positions
            codes = model.visual_tokenizer.unpack_codes(targets[written])  # (n, D)
            outputs = model.depth_head(before[written], model.get_input_embeddings()(codes[:, :-1]))
            logits = F.linear(outputs, *model.code_head())  # (n, D, K)
            total += float(
                F.cross_entropy(logits.flatten(0, 1), codebook.rows_of(codes).flatten(), reduction="sum")
            )
            count += codes.numel()
    return {
        "codes": count,
        "nll_over_codes": total / count,
        "nll_over_vocabulary": total_vocab / count if image_head == "flat" else None,
    }


def fit_judge(processor, args) -> dict:
    """The evaluation's judge, fit on the training emoji's real renders and scored on the held-out ones."""
    from transformers_unicode.data.openmoji import load_openmoji
    from transformers_unicode.evaluation.judge import GroupJudge

    size = processor.visual_tokenizer.config.image_size
    train = load_openmoji(split="train", size=size, limit=300 if args.tiny else None)  # every group
    test = load_openmoji(split="test", size=size)
    judge = GroupJudge().fit(list(train["image"]), list(train["group"]))
    return {"judge": judge, **judge.score(list(test["image"]), list(test["group"]))}


def class_conditional(model, processor, judge, per_group: int, batch_size: int) -> dict:
    """The share of drawings the judge puts in the group they were asked for (the evaluation's protocol)."""
    from transformers_unicode.data.openmoji_conversations import GROUP_TO_IMAGE_PROMPT, emoji_group_names
    from transformers_unicode.evaluation.stage2 import draw

    requested = [group for group in emoji_group_names() for _ in range(per_group)]
    model.eval()
    drawings = draw(
        model,
        processor,
        [GROUP_TO_IMAGE_PROMPT.format(group=g) for g in requested],
        seed=0,
        batch_size=batch_size,
    )
    scores = judge.class_conditional(drawings, requested)
    return {**scores, "groups_judged": len(set(scores["judged_as"]))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", default="runs/tokenizer", help="a Stage I tokenizer folder")
    parser.add_argument("--minutes", type=float, default=10.0, help="Stage II budget per head")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--heads", nargs="+", choices=("flat", "depth"), default=["flat", "depth"])
    parser.add_argument(
        "--tuning", choices=("lora", "full"), default="lora", help="LoRA r 64, or every weight"
    )
    parser.add_argument(
        "--depth-head-lr", type=float, default=None, help="the depth head's own rate (default: --lr)"
    )
    parser.add_argument("--steps", type=int, default=None, help="stop at this many steps (and the budget)")
    parser.add_argument("--samples", type=int, default=2000, help="samples in the Stage II mixture")
    parser.add_argument("--train-limit", type=int, default=None, help="training emoji (default: all)")
    parser.add_argument("--eval-images", type=int, default=64, help="held-out drawings scored")
    parser.add_argument(
        "--per-group", type=int, default=4, help="class-conditional drawings per group (0: off)"
    )
    parser.add_argument("--draw-batch-size", type=int, default=36, help="drawings per generate call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tiny:
        args.samples, args.train_limit, args.eval_images, args.per_group = 32, 16, 8, min(args.per_group, 1)
    rows, judge = {}, None
    with tempfile.TemporaryDirectory() as scratch:
        for head in args.heads:
            model, processor = build(args, head)
            started = time.perf_counter()
            run = train(model, processor, args, os.path.join(scratch, head), head)
            score = held_out_code_nll(model, processor, head, args.eval_images, args.batch_size)
            if args.per_group:
                judge = judge or fit_judge(processor, args)
                score |= class_conditional(
                    model, processor, judge["judge"], args.per_group, args.draw_batch_size
                )
            rows[head] = {**run, **score, "wall": time.perf_counter() - started}
    print(f"# {cpu_model()}, {args.threads} threads; {package_versions('torch', 'transformers', 'trl')}")
    tuning = "LoRA r 64" if args.tuning == "lora" else "full tuning"
    head_lr = "" if args.depth_head_lr is None else f", depth head lr {args.depth_head_lr:g}"
    print(
        f"# {'tiny random Llama' if args.tiny else 'SmolLM2-135M-Instruct + ' + args.tokenizer}; Stage II budget "
        f"{args.minutes:g} min per head on text_to_image + group_to_image, {tuning}, lr {args.lr:g}{head_lr}, "
        f"batch {args.batch_size}; load average {os.getloadavg()[0]:.2f}"
    )
    drawn = args.per_group > 0
    print(
        "| head | Stage II steps | samples seen | train s | train loss, last 10 steps | held-out codes "
        "| NLL / code (over K codes) | over V |"
        + (" class-conditional in the requested group | groups the judge named |" if drawn else "")
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if drawn else ""))
    for head, row in rows.items():
        steps = row["steps"]
        row["samples_seen"] = None if steps is None else steps * args.batch_size
        vocab = "-" if row["nll_over_vocabulary"] is None else f"{row['nll_over_vocabulary']:.3f}"
        drawing = (
            f" {100 * row['in_requested_group']:.1f} % of {row['drawings']} | {row['groups_judged']} of 9 |"
            if drawn
            else ""
        )
        last = [loss for _, loss in row["loss_history"][-10:]]
        row["train_loss_last_10"] = sum(last) / len(last) if last else None
        train_loss = "-" if not last else f"{row['train_loss_last_10']:.3f}"
        print(
            f"| {head} | {steps} | {row['samples_seen'] or '-'} | {row['seconds']:.0f} | {train_loss} | {row['codes']} | "
            f"{row['nll_over_codes']:.3f} | {vocab} |{drawing}"
        )
    if drawn:
        print(
            f"# the judge on held-out real renders: {100 * judge['accuracy']:.1f} % "
            f"(balanced {100 * judge['balanced_accuracy']:.1f} %; counts at >= 75 %); chance in the requested "
            "group: 11.1 %"
        )
        rows["judge"] = {k: v for k, v in judge.items() if k != "judge"}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as file:
            json.dump({"args": vars(args), "rows": rows, "load_average": os.getloadavg()[0]}, file, indent=1)


if __name__ == "__main__":
    main()
