"""Measuring what Stage II teaches: answers to image questions, and images drawn from names."""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image
from scipy.spatial.distance import cdist
from tqdm.auto import tqdm
from transformers.utils import logging

from ..data.conversations import chat_messages
from ..modeling.modeling_unicode import CACHE_ARGUMENT
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


def _choice_suffixes(processor, choices: list[str]) -> list[list[int]]:
    """The ids each choice adds as the assistant's answer, as the chat template writes it (its end marker too)."""
    tokenizer, user = processor.tokenizer, [{"role": "user", "content": "?"}]
    prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=True)
    prompt = list(prompt["input_ids"])
    suffixes = []
    for choice in choices:
        turns = [*user, {"role": "assistant", "content": choice}]
        full = list(tokenizer.apply_chat_template(turns, tokenize=True, return_dict=True)["input_ids"])
        if full[: len(prompt)] != prompt:
            raise ValueError("The chat template does not write the answer after its generation prompt.")
        suffix = full[len(prompt) :]
        end = suffix.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in suffix else len(suffix)
        suffixes.append(suffix[:end])
    return suffixes


def rank_choices(model, processor, conversations, choices: list[str], batch_size: int = 32) -> list[str]:
    """For each conversation, the choice whose answer has the highest log-likelihood after its first user turn.

    A reading of the model that greedy decoding hides: a model can rank the right group above the others
    long before it is confident enough to write it.
    """
    scores = choice_log_likelihoods(model, processor, conversations, choices, batch_size)
    return [choices[i] for i in scores.argmax(1).tolist()]


@torch.no_grad()
def choice_log_likelihoods(
    model, processor, conversations, choices: list[str], batch_size: int = 32
) -> torch.Tensor:
    """`(N, K)`: the log-likelihood of each choice as the assistant's answer (its end marker included) after the
    first user turn of each conversation.

    A reading of the model that greedy decoding hides: a model can rank the right group above the others
    long before it is confident enough to write it. The prompt runs once per conversation; the choices are
    scored on copies of its cache (`DynamicCache.batch_repeat_interleave`), so ranking costs about one
    forward pass, not one per choice. `batch_size` bounds those copies: a forward pass holds
    `max(1, batch_size // len(choices))` conversations. (16 conversations of 9 choices each held 144 cache
    copies and their logits: 1.4 GB more than the rest of the evaluation, issue 17 §1.)
    """
    per_forward = max(1, batch_size // len(choices))
    suffixes = _choice_suffixes(processor, choices)
    width, pad = max(map(len, suffixes)), processor.tokenizer.pad_token_id
    candidates = torch.full((len(choices), width), pad, dtype=torch.long)
    candidate_mask = torch.zeros_like(candidates)
    for row, suffix in enumerate(suffixes):
        candidates[row, : len(suffix)] = torch.as_tensor(suffix)
        candidate_mask[row, : len(suffix)] = 1
    all_scores, records = [], list(conversations)
    for begin in range(0, len(records), per_forward):
        batch = records[begin : begin + per_forward]
        prompts = [
            processor.apply_chat_template(
                chat_messages(record["messages"][:1]), add_generation_prompt=True, tokenize=False
            )
            for record in batch
        ]
        inputs = processor(images=[record["images"] for record in batch], text=prompts, return_tensors="pt")
        mask = inputs["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as `generate` numbers left-padded prompts
        prompt = model(
            input_ids=inputs["input_ids"],
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        first = prompt.logits[:, -1].log_softmax(-1)  # (B, V): the answer's first token
        cache = getattr(prompt, CACHE_ARGUMENT)  # `cache` from transformers 5.24, `past_key_values` before
        cache.batch_repeat_interleave(len(choices))
        n = len(batch) * len(choices)
        ids, ids_mask = candidates.repeat(len(batch), 1), candidate_mask.repeat(len(batch), 1)  # (B*K, W)
        rest = model(
            input_ids=ids,
            attention_mask=torch.cat([mask.repeat_interleave(len(choices), 0), ids_mask], dim=1),
            position_ids=mask.sum(-1).repeat_interleave(len(choices), 0)[:, None] + torch.arange(width),
            **{CACHE_ARGUMENT: cache},
            use_cache=True,
        ).logits.log_softmax(-1)  # (B*K, W, V)
        scores = first.repeat_interleave(len(choices), 0).gather(1, ids[:, :1])[:, 0]
        later = rest[:, :-1].gather(2, ids[:, 1:, None])[..., 0] * ids_mask[:, 1:]
        scores = (scores + later.sum(1)).view(n // len(choices), len(choices))
        all_scores.append(scores)
    return torch.cat(all_scores)


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
def _drawing_prompts(processor, prompts: list[str]):
    """Drawing prompts as the chat template writes a user turn, batched (left-padded) for `generate`."""
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for prompt in prompts
    ]
    return processor(text=texts, return_tensors="pt")


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
        inputs = _drawing_prompts(processor, prompts[begin : begin + batch_size])
        torch.manual_seed(seed + begin)
        output = model.generate(
            **inputs,
            generation_mode="image",
            guidance_scale=guidance_scale,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
        images += processor.decode_images(output)  # the prompts hold no image, so each row has one span
    return images


@torch.no_grad()
def drawing_code_accuracy(model, processor, prompts: list[str], images, batch_size: int = 4) -> float:
    """The share of code ids that greedy drawings of `prompts` get right, against the codes of `images`.

    Each prompt is drawn with `generate(generation_mode="image", do_sample=False)` and its written span is
    compared, position by position and code by code, with `processor.encode_images(image)`: 1.0 means the
    model writes exactly the codes the visual tokenizer gives the image. It tells whether Stage II has
    learnt (or memorised) a drawing, which a pixel metric blurs.
    """
    if len(prompts) != len(images):
        raise ValueError(f"Got {len(prompts)} prompts but {len(images)} images; pass one image per prompt.")
    targets = processor.encode_images(list(images)).flatten(1)  # (N, h*w*D) LLM ids
    correct = 0
    for begin in range(0, len(prompts), batch_size):
        inputs = _drawing_prompts(processor, prompts[begin : begin + batch_size]).to(model.device)
        output = model.generate(
            **inputs,
            generation_mode="image",
            do_sample=False,
            pad_token_id=processor.tokenizer.pad_token_id,
        ).cpu()
        for row, target in zip(output, targets[begin : begin + batch_size], strict=True):
            start, end = processor.tokenizer.find_image_spans(row)[-1]  # the span this call wrote
            correct += int((row[start:end] == target).sum())
    return correct / targets.numel()


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
    "drawing_code_accuracy",
    "exact_match_accuracy",
    "normalize_answer",
    "choice_log_likelihoods",
    "rank_choices",
    "text_to_image_quality",
]
