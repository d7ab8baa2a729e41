"""Image generation through `generate`: the logits processor that keeps image spans well formed.

Everything else image generation needs is already in transformers: sampling, seeding and batching
are `generate`'s; classifier-free guidance is its `UnbatchedClassifierFreeGuidanceLogitsProcessor`
(turned on by `guidance_scale`, against `negative_prompt_ids`). What it cannot know is the grammar of
an image span, so that is the one piece written here.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class UniCodeImageSpanLogitsProcessor(LogitsProcessor):
    r"""
    Inside an image span (after an unclosed `image_start_token_id`) only visual code ids may be sampled,
    exactly `span_length` (h * w * D) of them; then the span is closed with `image_end_token_id`.
    Outside a span the scores pass unchanged, so the same processor serves text and image generation.

    Stateless: where each row stands is read from `input_ids` at every step, so it is safe under beam
    search reordering and with rows whose spans started at different steps.

    Args:
        visual_ids (`torch.LongTensor`): the LLM ids that are visual codes.
        span_length (`int`): codes in one image span (h * w * D).
        image_start_token_id (`int`): the marker that opens a span.
        image_end_token_id (`int`): the marker that closes it.
        vocab_size (`int`): width of the scores.

    Example:

    ```python
    >>> processor = UniCodeImageSpanLogitsProcessor(torch.tensor([5, 7]), span_length=2, image_start_token_id=1,
    ...                                              image_end_token_id=2, vocab_size=10)
    >>> scores = processor(torch.tensor([[3, 1, 5]]), torch.zeros(1, 10))   # one code written: only 5 and 7 left
    >>> (scores[0] > float("-inf")).nonzero().flatten().tolist()
    [5, 7]
    ```
    """

    def __init__(
        self,
        visual_ids: torch.Tensor,
        span_length: int,
        image_start_token_id: int,
        image_end_token_id: int,
        vocab_size: int,
    ):
        if span_length < 1:
            raise ValueError(f"span_length must be >= 1; got {span_length}.")
        self.span_length = span_length
        self.image_start_token_id = image_start_token_id
        self.image_end_token_id = image_end_token_id
        # Additive masks, built once: 0 where allowed, -inf elsewhere.
        self._code_mask = torch.full((vocab_size,), float("-inf"))
        self._code_mask[torch.as_tensor(visual_ids, dtype=torch.long)] = 0.0
        self._end_mask = torch.full((vocab_size,), float("-inf"))
        self._end_mask[image_end_token_id] = 0.0

    def written_in_span(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """Per row: codes written since the last unclosed span start, or -1 outside a span."""
        length = input_ids.shape[1]
        positions = torch.arange(1, length + 1, device=input_ids.device)
        last_start = ((input_ids == self.image_start_token_id) * positions).amax(dim=1)  # 0 = never
        last_end = ((input_ids == self.image_end_token_id) * positions).amax(dim=1)
        inside = last_start > last_end
        return torch.where(inside, length - last_start, torch.full_like(last_start, -1))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        written = self.written_in_span(input_ids)  # (B,)
        if bool((written < 0).all()):
            return scores
        code_mask = self._code_mask.to(scores.device, scores.dtype)
        end_mask = self._end_mask.to(scores.device, scores.dtype)
        if code_mask.shape[0] != scores.shape[-1]:  # lm_head padded wider than the vocabulary
            pad = scores.shape[-1] - code_mask.shape[0]
            code_mask = torch.nn.functional.pad(code_mask, (0, pad), value=float("-inf"))
            end_mask = torch.nn.functional.pad(end_mask, (0, pad), value=float("-inf"))
        coding = (written >= 0) & (written < self.span_length)
        closing = written >= self.span_length
        if bool(coding.all()):  # the usual step of image generation: every row mid-span
            return scores + code_mask
        mask = torch.zeros_like(scores)
        mask[coding] = code_mask
        mask[closing] = end_mask
        return scores + mask


__all__ = ["UniCodeImageSpanLogitsProcessor"]
