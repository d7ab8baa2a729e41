"""Measuring what Stage II teaches: answers to image questions, and images drawn from names."""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image
from scipy.spatial.distance import cdist
from tqdm.auto import tqdm
from transformers.utils import logging

from ..training.conversations import chat_messages
from .images import score_image_pairs
from .reconstruction import psnr
from .retrieval import image_features, retrieval_accuracy

logger = logging.get_logger(__name__)


def normalize_answer(text: str) -> str:
    """Case, surrounding space and final punctuation do not make an answer wrong."""
    return re.sub(r"\s+", " ", text).strip().strip(".!").strip().casefold()


@torch.no_grad()
def answer_questions(
    model, processor, conversations, max_new_tokens: int = 16, batch_size: int = 16, desc: str | None = None
) -> list[str]:
    """Greedy answers to the first user turn of each conversation (`messages`, `images` records).

    `desc` shows a progress bar with that title.
    """
    answers = []
    records = list(conversations)
    for begin in tqdm(range(0, len(records), batch_size), desc=desc, disable=desc is None, unit="batch"):
        batch = records[begin : begin + batch_size]
        prompts = [
            processor.apply_chat_template(
                chat_messages(record["messages"][:1]), add_generation_prompt=True, tokenize=False
            )
            for record in batch
        ]
        images = [record["images"] for record in batch]
        inputs = processor(images=images, text=prompts, return_tensors="pt")
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
        answers += processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def exact_match_accuracy(predictions: list[str], references: list[str]) -> dict:
    """Accuracy and balanced (per-class mean) accuracy, and the majority-class baseline to compare with."""
    if len(predictions) != len(references) or not references:
        raise ValueError(
            f"Need as many predictions as references (>0); got {len(predictions)} and {len(references)}."
        )
    correct = [
        normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references, strict=True)
    ]
    classes = sorted(set(references))
    per_class = [np.mean([c for c, r in zip(correct, references, strict=True) if r == k]) for k in classes]
    majority = max(references.count(k) for k in classes) / len(references)
    return {
        "accuracy": float(np.mean(correct)),
        "balanced_accuracy": float(np.mean(per_class)),
        "majority_baseline": float(majority),
        "count": len(references),
    }


@torch.no_grad()
def draw(
    model,
    processor,
    prompts: list[str],
    seed: int = 0,
    guidance_scale: float | None = None,
    batch_size: int = 8,
    desc: str | None = None,
):
    """One image per prompt through the chat template and `generate(generation_mode="image")`.

    `desc` shows a progress bar with that title.
    """
    images = []
    for begin in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=desc is None, unit="batch"):
        texts = [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
                add_generation_prompt=True,
                tokenize=False,
            )
            for prompt in prompts[begin : begin + batch_size]
        ]
        inputs = processor(text=texts, return_tensors="pt")
        torch.manual_seed(seed + begin)
        output = model.generate(
            **inputs,
            generation_mode="image",
            guidance_scale=guidance_scale,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
        images += processor.decode_images(output)  # the prompts hold no image, so each row has one span
    return images


def text_to_image_quality(
    generated: list[Image.Image], targets: list[Image.Image], candidates: list[Image.Image]
):
    """How close drawn images are to the real render of the emoji they name.

    `psnr` against the target render (the drawing resized to it), and retrieval: the rank of the target among
    `candidates` (every real render, targets included) by nearest neighbour in the fixed `image_features`
    space, as top-1/top-5 accuracy.
    """
    if len(generated) != len(targets):
        raise ValueError(f"{len(generated)} generated images for {len(targets)} targets.")
    resized = [g.convert("RGB").resize(t.size) for g, t in zip(generated, targets, strict=True)]
    scores = score_image_pairs(psnr, resized, targets)
    bank = image_features(candidates)
    # Each target's own entry in the bank (its nearest render), which then labels both it and its drawing.
    target_index = cdist(image_features(targets), bank).argmin(axis=1)
    ranking = retrieval_accuracy(image_features(generated), target_index, bank, range(len(bank)), k=(1, 5))
    return {
        "psnr": float(np.mean(scores)),
        "top1": ranking["top1"],
        "top5": ranking["top5"],
        "count": len(generated),
        "candidates": len(candidates),
    }


__all__ = [
    "answer_questions",
    "draw",
    "exact_match_accuracy",
    "normalize_answer",
    "text_to_image_quality",
]
