"""UniCodeTokenizer: the LLM's own fast tokenizer plus three image markers.

Visual codes need no new vocabulary (they are the LLM's ids); only the markers are new:
`<image>` (where a prompt puts an image), `<|image_start|>` and `<|image_end|>` (around every image
span in the id sequence). The tokenizer also owns the layout of a written image span and the chat
template with image slots.
"""

from __future__ import annotations

import torch
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging

logger = logging.get_logger(__name__)

IMAGE_TOKEN = "<image>"
IMAGE_START_TOKEN = "<|image_start|>"
IMAGE_END_TOKEN = "<|image_end|>"
# Ids at or above this are packed image positions (see UniCodeVisualTokenizer.pack_codes); the value is
# repeated here, not imported, so this file stays loadable on its own with trust_remote_code.
PACKED_CODE_OFFSET = 1 << 40

# ChatML (SmolLM2's format) where a message's content may be a list of {"type": "image"} and
# {"type": "text", "text": ...} items; each image item becomes an <image> slot for the processor to fill.
# {% generation %} marks the assistant's turns for `return_assistant_tokens_mask`.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}{%- generation -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- '<image>' -}}{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    "{%- else -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- '<image>' -}}{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class UniCodeTokenizer(PreTrainedTokenizerFast):
    r"""
    A causal LM's fast tokenizer with the image markers added as special tokens, left padding (what
    batched `generate` needs) and a chat template with image slots.

    Build one from the LLM's tokenizer with [`UniCodeTokenizer.from_llm_tokenizer`].

    The markers are `image_token` (`<image>`), `image_start_token` (`<|image_start|>`) and `image_end_token`
    (`<|image_end|>`); all arguments are those of [`PreTrainedTokenizerFast`].

    Example:

    ```python
    >>> tokenizer = UniCodeTokenizer.from_llm_tokenizer(llm_tokenizer)
    >>> span = tokenizer.code_map_to_ids(codes)            # [<|image_start|>, h*w*D code ids..., <|image_end|>]
    >>> tokenizer.ids_to_code_map(span[1:-1], latent_size=8, codes_per_position=4).shape
    torch.Size([8, 8, 4])
    ```
    """

    padding_side = "left"
    # Class attributes, not __init__ arguments: transformers 5 rebuilds the backend from bare vocab/merges
    # for a tokenizer class with its own __init__, which would lose the LLM's pre-tokenizer and decoder.
    # The markers themselves are added tokens, saved in tokenizer.json.
    image_token = IMAGE_TOKEN
    image_start_token = IMAGE_START_TOKEN
    image_end_token = IMAGE_END_TOKEN

    @classmethod
    def from_llm_tokenizer(cls, tokenizer, chat_template: str | None = None) -> UniCodeTokenizer:
        """A UniCodeTokenizer over the same vocabulary as `tokenizer` (which is not modified)."""
        if not hasattr(tokenizer, "backend_tokenizer"):
            raise ValueError(
                f"UniCode needs the LLM's fast tokenizer (a `tokenizers` backend); got {type(tokenizer).__name__}."
            )
        special = {
            name: getattr(tokenizer, name)
            for name in ("bos_token", "eos_token", "unk_token", "pad_token")
            if getattr(tokenizer, name, None) is not None
        }
        if "pad_token" not in special and "eos_token" in special:
            special["pad_token"] = special["eos_token"]  # batched generation needs a pad id
        unicode_tokenizer = cls(
            tokenizer_object=tokenizer.backend_tokenizer,
            chat_template=chat_template or CHAT_TEMPLATE,
            model_max_length=tokenizer.model_max_length,
            padding_side="left",
            **special,
        )
        markers = (cls.image_token, cls.image_start_token, cls.image_end_token)
        vocabulary = unicode_tokenizer.get_vocab()
        missing = [marker for marker in markers if marker not in vocabulary]
        unicode_tokenizer.add_tokens(
            [AddedToken(m, special=True, normalized=False) for m in missing], special_tokens=True
        )
        return unicode_tokenizer

    # ---- marker ids ------------------------------------------------------------------------------
    @property
    def image_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.image_token)

    @property
    def image_start_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.image_start_token)

    @property
    def image_end_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.image_end_token)

    # ---- code map <-> id span ----------------------------------------------------------------------
    def code_map_to_ids(self, codes: torch.Tensor) -> list[int]:
        """A written image span: the markers around the `(h, w, D)` code map in raster order, a position's
        D codes consecutive (the order the model writes them, Eq. 4)."""
        if codes.dim() != 3:
            raise ValueError(f"A code map is (h, w, D); got shape {tuple(codes.shape)}.")
        return [self.image_start_token_id, *codes.flatten().tolist(), self.image_end_token_id]

    @staticmethod
    def ids_to_code_map(
        span: list[int] | torch.Tensor, latent_size: int, codes_per_position: int
    ) -> torch.LongTensor:
        """The inside of a written span -> `(h, w, D)` code map; an error if it is not exactly h*w*D long."""
        span = torch.as_tensor(span, dtype=torch.long).flatten()
        expected = latent_size * latent_size * codes_per_position
        if span.numel() != expected:
            raise ValueError(
                f"An image span holds {expected} codes ({latent_size}x{latent_size} positions x {codes_per_position}); "
                f"this one has {span.numel()}: it was cut short (raise max_new_tokens) or is not an image."
            )
        return span.view(latent_size, latent_size, codes_per_position)

    def find_image_spans(self, ids) -> list[tuple[int, int]]:
        """`[(begin, end)]` of every image span in a 1-D id sequence: the ids strictly between the markers.

        An unclosed span raises, since its length cannot be trusted.
        """
        ids = torch.as_tensor(ids).flatten().tolist()
        spans, begin = [], None
        for index, token in enumerate(ids):
            if token == self.image_start_token_id:
                if begin is not None:
                    raise ValueError(
                        f"An image span opened at position {begin - 1} is not closed before the next one."
                    )
                begin = index + 1
            elif token == self.image_end_token_id:
                if begin is None:
                    raise ValueError(f"{self.image_end_token} at position {index} closes no image span.")
                spans.append((begin, index))
                begin = None
        if begin is not None:
            raise ValueError(
                f"The image span opened at position {begin - 1} is not closed ({len(ids) - begin} ids follow): the "
                "generation was cut short; raise max_new_tokens or use generation_mode='image'."
            )
        return spans

    def image_span_mask(self, ids) -> list[int]:
        """1 for each id strictly inside an image span (read or written), 0 elsewhere, markers included."""
        start, end = self.image_start_token_id, self.image_end_token_id
        mask, inside = [], False
        for token in ids:
            if token in (start, end):
                inside = token == start
                mask.append(0)
            else:
                mask.append(int(inside))
        return mask

    def _decode(self, token_ids, skip_special_tokens: bool = False, **kwargs) -> str:
        # Text only: ids inside image spans, the markers and packed image ids are not text, so they are left out.
        token_ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        markers = (self.image_start_token_id, self.image_end_token_id, self.image_token_id)
        kept = [
            token
            for token, in_span in zip(token_ids, self.image_span_mask(token_ids), strict=True)
            if not in_span and token not in markers and 0 <= token < PACKED_CODE_OFFSET
        ]
        return super()._decode(kept, skip_special_tokens=skip_special_tokens, **kwargs)


__all__ = ["CHAT_TEMPLATE", "IMAGE_END_TOKEN", "IMAGE_START_TOKEN", "IMAGE_TOKEN", "UniCodeTokenizer"]
