"""Stage II samples as id sequences: conversations, decompression, the mixture (SPEC sections 4-5).

Every Stage II sample ends up as `input_ids` + `assistant_masks` (1 on the tokens the model must
write), the format TRL's SFTTrainer and [`UniCodeDataCollator`] read. Images are encoded once here
by the processor's frozen visual tokenizer, inside `datasets.map` with a fingerprint of that
tokenizer, so Stage II never runs the visual encoder and a second run reads the cache.

An image in a conversation takes the form of its role:
- read (system or user turn): `<|image_start|>`, one packed id per position (h*w), `<|image_end|>`;
- written (assistant turn, a target): `<|image_start|>`, h*w*D code ids, `<|image_end|>`; for a model with the
  depth head (`image_head="depth"`), `<|image_start|>`, h*w packed ids, `<|image_end|>`: the LLM reads what it
  writes with the same F, and the depth head predicts each position's D codes.
"""

from __future__ import annotations

import hashlib
import os

import datasets
import numpy as np
import torch
from transformers.utils import logging

from ..data.conversations import chat_messages
from ..modeling.configuration_unicode import IMAGE_HEADS

logger = logging.get_logger(__name__)

DECOMPRESSION_PROMPT = "Decompress part {part} of {parts} of this image into its codes."
SFT_FEATURES = datasets.Features(
    {
        "input_ids": datasets.Sequence(datasets.Value("int64")),
        "assistant_masks": datasets.Sequence(datasets.Value("int8")),
        "task": datasets.Value("string"),
    }
)


def encode_conversation(
    messages: list[dict], image_codes: list[torch.Tensor], processor, image_head: str = "flat"
) -> dict:
    """One conversation -> `{"input_ids", "assistant_masks"}` through the chat template.

    Args:
        messages (`list[dict]`): chat turns; an image is a content item `{"type": "image"}`.
        image_codes (`list[torch.LongTensor]`): the codes of each image item in order, `(h, w, D)` or `(n, D)`
            for a part of an image (decompression).
        processor ([`UniCodeProcessor`]): its tokenizer's chat template, markers and visual tokenizer.
        image_head (`str`, *optional*, defaults to `"flat"`): the model's `config.image_head`; how a written image
            is laid out (D code ids per position, or one packed id per position for the depth head).
    """
    _check_image_head(image_head)
    tokenizer = processor.tokenizer
    rendered = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = list(rendered["input_ids"]), list(rendered["assistant_masks"])
    slots = [i for i, token in enumerate(ids) if token == tokenizer.image_token_id]
    if len(slots) != len(image_codes):
        raise ValueError(
            f"The conversation has {len(slots)} image item(s) but {len(image_codes)} image(s) were given."
        )
    if 1 not in mask:
        raise ValueError("The conversation has no assistant turn: there is nothing to learn from it.")
    start, end = tokenizer.image_start_token_id, tokenizer.image_end_token_id
    input_ids, assistant_masks, previous = [], [], 0
    for slot, codes in zip(slots, image_codes, strict=True):
        input_ids += ids[previous:slot]
        assistant_masks += mask[previous:slot]
        positions = codes.reshape(-1, codes.shape[-1])  # (n, D)
        if mask[slot] and image_head == "flat":  # written: every code is a target, markers included
            span = [start, *positions.flatten().tolist(), end]
        else:  # read, or written through the depth head: one packed id per position (its D codes the target)
            span = [start, *processor.visual_tokenizer.pack_codes(positions).tolist(), end]
        input_ids += span
        assistant_masks += [mask[slot]] * len(span)
        previous = slot + 1
    input_ids += ids[previous:]
    assistant_masks += mask[previous:]
    return {"input_ids": input_ids, "assistant_masks": assistant_masks}


def _check_image_head(image_head: str) -> None:
    if image_head not in IMAGE_HEADS:
        raise ValueError(f"image_head must be 'flat' or 'depth'; got {image_head!r}.")


def decompression_sample(codes: torch.Tensor, num_segments: int, processor, image_head: str = "flat") -> dict:
    """The in-context decompression task (Eq. 4-5) for one image's `(h, w, D)` code map.

    The h*w positions are cut, in raster order, into `num_segments` consecutive parts; turn t shows part t
    as the model reads it (aggregated embeddings: packed ids) and answers with its D codes per position. With the
    depth head the answer is written through the head (see [`encode_conversation`]): the target is still the D
    codes of every position, predicted by the depth head.
    """
    if codes.dim() != 3:
        raise ValueError(f"A code map is (h, w, D); got shape {tuple(codes.shape)}.")
    positions = codes.reshape(-1, codes.shape[-1])
    if not 1 <= num_segments <= positions.shape[0]:
        raise ValueError(
            f"num_segments must be between 1 and the {positions.shape[0]} positions of a code map; got {num_segments}."
        )
    messages, parts = [], []
    for index, part in enumerate(np.array_split(np.arange(positions.shape[0]), num_segments)):
        prompt = DECOMPRESSION_PROMPT.format(part=index + 1, parts=num_segments)
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]})
        messages.append({"role": "assistant", "content": [{"type": "image"}]})
        parts += [positions[part], positions[part]]
    return encode_conversation(messages, parts, processor, image_head=image_head)


def _visual_tokenizer_fingerprint(processor) -> str:
    """A hash of everything that decides the ids: visual tokenizer weights, vocabulary and chat template."""
    digest = hashlib.sha256()
    for name, tensor in sorted(processor.visual_tokenizer.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(str(len(processor.tokenizer)).encode())
    digest.update((processor.tokenizer.chat_template or "").encode())
    return digest.hexdigest()[:16]


def _map_cached(
    dataset, function, processor, name: str, settings: str, cache_dir: str | None, batch_size: int
):
    """`dataset.map(function)` under a fingerprint of the data, the visual tokenizer and `settings`.

    The fingerprint is computed here because datasets would otherwise hash the processor (a model) by
    pickling it, which is slow and not stable across runs.
    """
    fingerprint = hashlib.sha256(
        f"{dataset._fingerprint}-{_visual_tokenizer_fingerprint(processor)}-{name}-{settings}".encode()
    ).hexdigest()[:16]
    cache_file = None
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
        cache_file = os.path.join(cache_dir, f"unicode-{name}-{fingerprint}.arrow")
    return dataset.map(
        function,
        batched=True,
        batch_size=batch_size,
        remove_columns=dataset.column_names,
        features=SFT_FEATURES,
        new_fingerprint=fingerprint,
        cache_file_name=cache_file,
        load_from_cache_file=cache_file is not None,
        desc=f"Tokenising {name} samples",
    )


def tokenize_conversations(
    dataset: datasets.Dataset,
    processor,
    task: str = "conversation",
    cache_dir: str | None = None,
    batch_size: int = 64,
    image_head: str = "flat",
) -> datasets.Dataset:
    """Conversation records (`messages`, `images`) -> Stage II samples (`input_ids`, `assistant_masks`, `task`).

    The images of a batch go through the visual tokenizer together; with `cache_dir` the result is written
    there under a fingerprint of the data and of the visual tokenizer, and read back on the next run.
    `image_head` is the model's (see [`encode_conversation`]).
    """
    _check_image_head(image_head)
    missing = {"messages", "images"} - set(dataset.column_names)
    if missing:
        raise ValueError(
            f"Conversation datasets need the columns 'messages' and 'images'; missing {sorted(missing)} "
            f"(columns: {dataset.column_names}). Build them with transformers_unicode.data.conversations."
        )
    return _map_cached(
        dataset,
        lambda batch: _tokenize_batch(batch, processor, task, image_head),
        processor,
        task,
        settings="" if image_head == "flat" else f"image_head={image_head}",
        cache_dir=cache_dir,
        batch_size=batch_size,
    )


def _tokenize_batch(batch, processor, task, image_head="flat"):
    images = [image for record_images in batch["images"] for image in record_images]
    codes = list(processor.encode_images(images)) if images else []
    output, next_image = {"input_ids": [], "assistant_masks": [], "task": []}, 0
    for messages, record_images in zip(batch["messages"], batch["images"], strict=True):
        record_codes = codes[next_image : next_image + len(record_images)]
        next_image += len(record_images)
        sample = encode_conversation(chat_messages(messages), record_codes, processor, image_head=image_head)
        output["input_ids"].append(sample["input_ids"])
        output["assistant_masks"].append(sample["assistant_masks"])
        output["task"].append(task)
    return output


def build_decompression_dataset(
    images: datasets.Dataset,
    processor,
    num_segments: int = 4,
    image_column: str = "image",
    cache_dir: str | None = None,
    batch_size: int = 64,
    image_head: str = "flat",
) -> datasets.Dataset:
    """One decompression sample per image of `images` (see [`decompression_sample`])."""
    _check_image_head(image_head)
    if image_column not in images.column_names:
        raise ValueError(f"No {image_column!r} column in the image dataset (columns: {images.column_names}).")

    def function(batch):
        codes = processor.encode_images(batch[image_column])
        samples = [decompression_sample(c, num_segments, processor, image_head) for c in codes]
        return {
            "input_ids": [s["input_ids"] for s in samples],
            "assistant_masks": [s["assistant_masks"] for s in samples],
            "task": ["decompression"] * len(samples),
        }

    return _map_cached(
        images,
        function,
        processor,
        "decompression",
        settings=f"segments={num_segments}" + ("" if image_head == "flat" else f",image_head={image_head}"),
        cache_dir=cache_dir,
        batch_size=batch_size,
    )


def label_balance_weights(labels: list[str], strength: float) -> np.ndarray:
    """A weight per record that draws label `l` (seen `n_l` times) in proportion to `n_l ** (1 - strength)`.

    `strength` 0 keeps the labels' natural frequencies; 1 draws every label equally often (a rare label's
    records repeat). OpenMoji's training groups run from 2,193 "People & Body" emoji to 80 "Activities", and a
    Stage II that sees them at those rates learns the majority answer first (issue 14).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"The label balance must lie in [0, 1] (0 = natural frequencies); got {strength}.")
    _, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    return counts[inverse].astype(np.float64) ** -strength


def mixture_indices(
    sizes: dict[str, int],
    ratios: dict[str, float],
    num_samples: int,
    seed: int = 0,
    weights: dict[str, np.ndarray] | None = None,
):
    """`{part: indices}` drawing `num_samples` samples from the parts in proportion to `ratios`.

    A part is repeated when its share exceeds its size (small sets are reused) and subsampled otherwise.
    A part given `weights` (one per record, e.g. `label_balance_weights`) is drawn with replacement in
    proportion to them instead. Choosing indices first lets the caller tokenise only the records that are
    actually used.
    """
    unknown = set(ratios) - set(sizes)
    if unknown:
        raise ValueError(
            f"Mixture ratios name unknown parts {sorted(unknown)}; the parts are {sorted(sizes)}."
        )
    if any(ratio < 0 for ratio in ratios.values()) or not any(ratio > 0 for ratio in ratios.values()):
        raise ValueError(f"Mixture ratios must be >= 0 with at least one > 0; got {ratios}.")
    active = {name: ratio for name, ratio in ratios.items() if ratio > 0}
    empty = [name for name in active if sizes[name] == 0]
    if empty:
        raise ValueError(f"Mixture parts {empty} are empty; give them data or a ratio of 0.")
    # Largest-remainder apportionment: the counts add up to num_samples exactly (rounding each share alone
    # gave 0 samples for 2 drawn from 5 equal parts, and 13 or 11 for 12 drawn from 3).
    total, rng, plan = sum(active.values()), np.random.default_rng(seed), {}
    shares = {name: num_samples * ratio / total for name, ratio in active.items()}
    counts = {name: int(share) for name, share in shares.items()}
    by_remainder = sorted(shares, key=lambda name: counts[name] - shares[name])  # stable: ties keep order
    for name in by_remainder[: num_samples - sum(counts.values())]:
        counts[name] += 1
    for name in active:
        count, size = counts[name], sizes[name]
        if weights is not None and name in weights:
            chances = np.asarray(weights[name], dtype=np.float64)
            if chances.shape != (size,):
                raise ValueError(f"Part {name!r} has {size} records but {chances.shape} weights.")
            plan[name] = rng.choice(size, size=count, replace=True, p=chances / chances.sum())
        else:
            repeats = [rng.permutation(size) for _ in range(-(-count // size))]
            plan[name] = np.concatenate(repeats)[:count] if count else np.zeros(0, dtype=np.int64)
        logger.info("Stage II mixture: %d %s samples (%d distinct)", count, name, np.unique(plan[name]).size)
    return plan


def mix_datasets(
    parts: dict[str, datasets.Dataset], ratios: dict[str, float], num_samples: int, seed: int = 0
):
    """A shuffled mixture of `num_samples` samples of the parts, in proportion to `ratios`."""
    plan = mixture_indices({name: len(part) for name, part in parts.items()}, ratios, num_samples, seed)
    chosen = [parts[name].select(indices) for name, indices in plan.items()]
    return datasets.concatenate_datasets(chosen).shuffle(seed=seed).flatten_indices()


__all__ = [
    "SFT_FEATURES",
    "build_decompression_dataset",
    "decompression_sample",
    "encode_conversation",
    "label_balance_weights",
    "mix_datasets",
    "mixture_indices",
    "tokenize_conversations",
]
