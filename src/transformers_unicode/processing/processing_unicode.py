"""UniCodeProcessor: images and text -> one sequence of unified codes, and back.

It holds the frozen visual tokenizer, so `processor(images=..., text=...)` writes each image's codes
straight into `input_ids`: this is how datasets are pre-tokenised once for Stage II, and how pipelines
feed the model. The visual tokenizer is saved beside the processor (subfolder `visual_tokenizer/`) and
loaded with `AutoModel`, so this file imports nothing from the modeling package and stays loadable on
its own with `trust_remote_code`.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoModel, BatchFeature, ProcessorMixin
from transformers.utils import logging

from .tokenization_unicode import CHAT_TEMPLATE, PACKED_CODE_OFFSET

logger = logging.get_logger(__name__)

VISUAL_TOKENIZER_FOLDER = "visual_tokenizer"


class UniCodeProcessor(ProcessorMixin):
    r"""
    The image processor, the [`UniCodeTokenizer`] and the frozen visual tokenizer behind one call.

    Each `<image>` in the text becomes an image span: `<|image_start|>`, one packed id per code-map position
    (h*w, the model embeds each as F of its D codes), `<|image_end|>`. With `return_codes=False` the
    positions are `<image>` placeholders and `pixel_values` is returned for the model to encode.

    Args:
        image_processor ([`UniCodeImageProcessor`]): pixels for the visual tokenizer.
        tokenizer ([`UniCodeTokenizer`]): the LLM's tokenizer with the image markers.
        visual_tokenizer ([`UniCodeVisualTokenizer`]): the Stage I tokenizer, frozen.
        chat_template (`str`, *optional*): defaults to the tokenizer's (ChatML with image slots).

    Example:

    ```python
    >>> processor = AutoProcessor.from_pretrained("runs/quickstart/model")
    >>> inputs = processor(images=image, text="<image>What is this?", return_tensors="pt")
    >>> output = model.generate(**inputs, max_new_tokens=20)
    >>> processor.decode(output[0], skip_special_tokens=True)
    >>> processor.decode_images(model.generate(**processor(text="a red apple", return_tensors="pt"),
    ...                                        generation_mode="image"))
    ```
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # Not a ProcessorMixin attribute (those are inferred from __init__ parameter names and saved as
        # configs); it is a model, saved and loaded by save_pretrained/from_pretrained below.
        visual_tokenizer = kwargs.pop("visual_tokenizer", None)
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None) or CHAT_TEMPLATE
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)
        self.visual_tokenizer = visual_tokenizer.eval() if visual_tokenizer is not None else None

    # ---- geometry ----------------------------------------------------------------------------------
    def _require_visual_tokenizer(self):
        if self.visual_tokenizer is None:
            raise ValueError(
                "This processor has no visual tokenizer; build it with visual_tokenizer=... or load a folder "
                f"that has a {VISUAL_TOKENIZER_FOLDER}/ subfolder."
            )
        return self.visual_tokenizer

    @property
    def image_seq_length(self) -> int:
        """Positions an image occupies when the model reads it (h*w)."""
        return self._require_visual_tokenizer().config.latent_size ** 2

    @property
    def image_generation_length(self) -> int:
        """Ids in a written image span (h*w*D)."""
        return self._require_visual_tokenizer().config.tokens_per_image

    # ---- images -> codes -----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images) -> torch.LongTensor:
        """Images -> code maps `(N, h, w, D)` of LLM ids."""
        visual_tokenizer = self._require_visual_tokenizer()
        pixel_values = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return visual_tokenizer.encode(pixel_values.to(visual_tokenizer.dtype)).codes

    def __call__(
        self, images=None, text=None, return_tensors=None, return_codes: bool = True, padding=None, **kwargs
    ):
        """Tokenise text with each `<image>` replaced by its image span.

        Args:
            images: one image or a list, in the order their `<image>` markers appear across the batch (a list
                of lists, one per text, is accepted too).
            text (`str` or `list[str]`, *optional*): prompts; without it, each image becomes a sample of its own.
            return_tensors (`str`, *optional*): `"pt"` for tensors; batches are left-padded.
            return_codes (`bool`, *optional*, defaults to `True`): write the codes into `input_ids`; `False` writes
                placeholders and returns `pixel_values` instead.

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` and `image_span_mask` (1 inside image spans),
            plus `pixel_values` when `return_codes=False`.
        """
        images = _flatten_images(images)
        image_token = self.tokenizer.image_token
        if text is None:
            if not images:
                raise ValueError("Give the processor text, images or both; got neither.")
            text = [image_token] * len(images)
        batched = isinstance(text, (list, tuple))
        texts = list(text) if batched else [text]
        if not texts or any(not isinstance(t, str) for t in texts):
            raise ValueError("text must be a string or a list of strings.")
        for index, sample in enumerate(texts):
            if not sample.strip():
                raise ValueError(f"Prompt {index} is empty; give the model something to read or to draw.")
        markers = [t.count(image_token) for t in texts]
        if sum(markers) != len(images):
            raise ValueError(
                f"The text has {sum(markers)} {image_token} marker(s) (per prompt: {markers}) but {len(images)} "
                f"image(s) were given; put one {image_token} where each image goes."
            )
        kwargs.pop("add_special_tokens", None)
        encoded = self.tokenizer(texts, add_special_tokens=True, **kwargs)["input_ids"]
        spans = self._image_spans(images, return_codes)
        sequences, next_image = [], 0
        for ids in encoded:
            sequence = []
            for token in ids:
                if token == self.tokenizer.image_token_id:
                    sequence.extend(spans[next_image])
                    next_image += 1
                else:
                    sequence.append(token)
            sequences.append(sequence)
        if padding is None:
            padding = return_tensors is not None and len({len(s) for s in sequences}) > 1
        padded = self.tokenizer.pad({"input_ids": sequences}, padding=padding, return_tensors=return_tensors)
        data = {"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"]}
        data["image_span_mask"] = self.image_span_mask(data["input_ids"])
        if not return_codes and images:
            data["pixel_values"] = self.image_processor(images, return_tensors="pt")["pixel_values"]
        if not batched and return_tensors is None:
            data = {key: value if key == "pixel_values" else value[0] for key, value in data.items()}
        return BatchFeature(data, tensor_type=return_tensors)

    def _image_spans(self, images, return_codes: bool) -> list[list[int]]:
        if not images:
            return []
        start, end = self.tokenizer.image_start_token_id, self.tokenizer.image_end_token_id
        if not return_codes:
            return [[start] + [self.tokenizer.image_token_id] * self.image_seq_length + [end] for _ in images]
        packed = self.visual_tokenizer.pack_codes(self.encode_images(images)).flatten(1)  # (N, h*w)
        return [[start, *row.tolist(), end] for row in packed]

    def image_span_mask(self, input_ids):
        """1 where an id lies strictly inside an image span (read or written), 0 elsewhere; a sequence or a batch."""
        ids = torch.as_tensor(input_ids)
        rows = ids.view(1, -1) if ids.dim() == 1 else ids
        mask = torch.tensor([self.tokenizer.image_span_mask(row.tolist()) for row in rows], dtype=torch.long)
        mask = mask.view(ids.shape)
        return mask if isinstance(input_ids, torch.Tensor) else mask.tolist()

    # ---- ids -> text and images ------------------------------------------------------------------------
    def decode(self, token_ids, skip_special_tokens: bool = True, **kwargs) -> str:
        """Text of a sequence with its image spans left out."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens, **kwargs)

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens=True, **kwargs):
        return self.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    @torch.no_grad()
    def decode_images(self, token_ids, output_type: str = "pil"):
        """Every image span in `token_ids` (a sequence or a batch, read or written) -> a list of images.

        A written span must hold exactly h*w*D visual ids, a read span h*w packed ids; anything else (a span
        cut short, ids outside the vocabulary, ids that are not visual codes) raises a `ValueError` that
        says which span.
        """
        visual_tokenizer = self._require_visual_tokenizer()
        config = visual_tokenizer.config
        rows = torch.as_tensor(token_ids, dtype=torch.long)
        rows = rows.view(1, -1) if rows.dim() == 1 else rows
        code_maps = []
        for row_index, row in enumerate(rows):
            for begin, end in self.tokenizer.find_image_spans(row):
                span = row[begin:end]
                where = f"image span at positions {begin}-{end} of sequence {row_index}"
                try:
                    if span.numel() and bool((span >= PACKED_CODE_OFFSET).all()):
                        if span.numel() != self.image_seq_length:
                            raise ValueError(
                                f"it has {span.numel()} packed positions, not {self.image_seq_length}"
                            )
                        codes = visual_tokenizer.unpack_codes(span).view(
                            config.latent_size, config.latent_size, -1
                        )
                    else:
                        if bool(((span < 0) | (span >= len(self.tokenizer))).any()):
                            bad = span[(span < 0) | (span >= len(self.tokenizer))][:5].tolist()
                            raise ValueError(
                                f"it holds ids outside the vocabulary of {len(self.tokenizer)} (e.g. {bad})"
                            )
                        codes = self.tokenizer.ids_to_code_map(
                            span, config.latent_size, config.codes_per_position
                        )
                        visual_tokenizer.codebook.rows_of(codes)  # raises for ids that are not visual codes
                except ValueError as error:
                    raise ValueError(f"Cannot decode the {where}: {error}") from None
                code_maps.append(codes)
        if not code_maps:
            return []
        pixels = visual_tokenizer.decode(torch.stack(code_maps))
        return self.image_processor.postprocess(pixels, output_type=output_type)

    # ---- saving ------------------------------------------------------------------------------------------
    def to_dict(self):
        # ProcessorMixin deep-copies every attribute before filtering; the visual tokenizer is a model saved on
        # its own, so it is kept out of that copy.
        visual_tokenizer = self.__dict__.pop("visual_tokenizer", None)
        try:
            return super().to_dict()
        finally:
            self.visual_tokenizer = visual_tokenizer

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        files = super().save_pretrained(save_directory, push_to_hub=False, **kwargs)
        if self.visual_tokenizer is not None:
            self.visual_tokenizer.save_pretrained(os.path.join(save_directory, VISUAL_TOKENIZER_FOLDER))
        if (
            push_to_hub
        ):  # the standard push, which saves again (visual tokenizer included) and uploads the folder
            repo_id = kwargs.pop("repo_id", str(save_directory).rstrip(os.sep).split(os.sep)[-1])
            self.push_to_hub(repo_id, **kwargs)
        return files

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        load_kwargs = {
            k: kwargs[k] for k in ("trust_remote_code", "revision", "token", "cache_dir") if k in kwargs
        }
        try:
            processor.visual_tokenizer = AutoModel.from_pretrained(
                pretrained_model_name_or_path, subfolder=VISUAL_TOKENIZER_FOLDER, **load_kwargs
            ).eval()
        except OSError:
            logger.warning(
                "No %s/ beside the processor at %s: it can tokenise text but not images.",
                VISUAL_TOKENIZER_FOLDER,
                pretrained_model_name_or_path,
            )
        return processor


def _flatten_images(images) -> list:
    if images is None:
        return []
    if not isinstance(images, (list, tuple)):
        return [images]
    flat = []
    for item in images:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    return flat


__all__ = ["UniCodeProcessor"]
