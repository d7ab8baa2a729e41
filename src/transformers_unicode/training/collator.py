"""The Stage II collator: padding and the label rules of Eq. 6, in one place."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..modeling.configuration_unicode import IMAGE_HEADS, PACKED_CODE_OFFSET

IGNORE_INDEX = -100


@dataclass
class UniCodeDataCollator:
    r"""
    Pads Stage II samples (`input_ids`, optional `assistant_masks`) into a batch with `labels`.

    Label rules (the loss of Eq. 6 is on answer tokens only):
    1. a token is a target only where `assistant_masks` is 1 (the assistant's turns, their `<|im_end|>`
       included); without `assistant_masks` every token is a target;
    2. an image the model **reads** (packed ids, one per position) is never a target, wherever it is;
    3. an image the model **writes** (`<|image_start|>`, h*w*D code ids, `<|image_end|>` in an assistant
       turn) is an ordinary target; with `image_head="depth"` it is written as h*w packed ids, and those
       packed ids (in an assistant turn only) are the depth head's targets;
    4. padding is never a target.

    The model masks rule 2 itself too, but TRL's fused LM head computes the loss outside the model, so the
    labels must already be right.

    Args:
        pad_token_id (`int`): the tokenizer's pad id.
        padding_side (`str`, *optional*, defaults to `"right"`): training pads on the right.
        pad_to_multiple_of (`int`, *optional*): round the batch length up (tensor-core friendly shapes).
        max_length (`int`, *optional*): refuse longer samples (cutting one could cut an image span in two).
        image_head (`str`, *optional*, defaults to `"flat"`): the model's `config.image_head`; `"depth"` keeps the
            packed ids of assistant turns as targets (rule 3).

    Example:

    ```python
    >>> collator = UniCodeDataCollator.from_processor(processor)
    >>> batch = collator([{"input_ids": [5, 6, 7], "assistant_masks": [0, 1, 1]}])
    >>> batch["labels"]
    tensor([[-100,    6,    7]])
    ```
    """

    pad_token_id: int
    padding_side: str = "right"
    pad_to_multiple_of: int | None = None
    max_length: int | None = None
    image_head: str = "flat"

    def __post_init__(self):
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right'; got {self.padding_side!r}.")
        if self.image_head not in IMAGE_HEADS:
            raise ValueError(f"image_head must be 'flat' or 'depth'; got {self.image_head!r}.")

    @classmethod
    def from_processor(cls, processor, **kwargs) -> UniCodeDataCollator:
        tokenizer = getattr(processor, "tokenizer", processor)
        if tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer has no pad token; set tokenizer.pad_token before training.")
        return cls(pad_token_id=tokenizer.pad_token_id, **kwargs)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("Cannot collate an empty batch.")
        rows, labels = [], []
        for index, example in enumerate(examples):
            if "input_ids" not in example:
                raise ValueError(
                    f"Sample {index} has no input_ids (keys: {sorted(example)}); tokenise the dataset first "
                    "(transformers_unicode.training.sft_data.tokenize_conversations)."
                )
            ids = torch.as_tensor(example["input_ids"], dtype=torch.long)
            if self.max_length is not None and ids.numel() > self.max_length:
                raise ValueError(
                    f"Sample {index} has {ids.numel()} tokens, more than max_length={self.max_length}; raise "
                    "max_length or drop long samples (truncating could cut an image span)."
                )
            target = ids.clone()
            answer = None
            if "assistant_masks" in example and example["assistant_masks"] is not None:
                answer = torch.as_tensor(example["assistant_masks"], dtype=torch.bool)
                if answer.shape != ids.shape:
                    raise ValueError(
                        f"Sample {index}: assistant_masks has {answer.numel()} entries for {ids.numel()} input_ids."
                    )
                target[~answer] = IGNORE_INDEX  # rule 1
            packed = ids >= PACKED_CODE_OFFSET
            if self.image_head == "depth" and answer is not None:
                packed &= ~answer  # rule 3: packed ids in an answer are an image the depth head writes
            target[packed] = IGNORE_INDEX  # rule 2
            rows.append(ids)
            labels.append(target)
        length = max(row.numel() for row in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {
            "input_ids": torch.full((len(rows), length), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), length), dtype=torch.long),
            "labels": torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long),  # rule 4
        }
        for index, (ids, target) in enumerate(zip(rows, labels, strict=True)):
            where = (
                slice(0, ids.numel()) if self.padding_side == "right" else slice(length - ids.numel(), length)
            )
            batch["input_ids"][index, where] = ids
            batch["attention_mask"][index, where] = 1
            batch["labels"][index, where] = target
        return batch


__all__ = ["IGNORE_INDEX", "UniCodeDataCollator"]
