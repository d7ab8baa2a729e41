"""UniCodeForCausalLM: a causal LM that reads and writes images as its own token ids.

Top to bottom: the pretrained base, the backbone (`UniCodeModel`: language model + frozen visual
tokenizer, returns `last_hidden_state`), and the model for generation (`UniCodeForCausalLM`: backbone +
`lm_head`). The layout is LLaVA's on purpose: TRL's SFTTrainer swaps in a fused LM head that calls
`model.model(...)` and reads `get_output_embeddings()`.

How an image sits in `input_ids`:
- read (an input image): `<|image_start|>`, h*w packed ids (one per position, see
  `UniCodeVisualTokenizer.pack_codes`), `<|image_end|>`; each packed id is embedded as F of the LLM-table
  rows of its D codes. With `pixel_values`, the h*w positions are `<image>` placeholders instead and the
  model encodes the pixels itself.
- written (a generated image, or a Stage II target): `<|image_start|>`, h*w*D ordinary code ids,
  `<|image_end|>`. With the depth head (`config.image_head="depth"`) a Stage II target is written as the h*w
  packed ids instead, and the depth head predicts each position's D codes; what `generate` returns is the
  same h*w*D code ids for both heads.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import diffusers  # noqa: F401  (see REMOTE_CODE_REQUIREMENT)
import torch
from torch import nn
from transformers import (
    AutoModel,
    GenerationMixin,
    LlamaConfig,
    LlamaModel,
    LogitsProcessorList,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils import logging

from .configuration_unicode import PACKED_CODE_OFFSET, UniCodeConfig
from .generation_unicode import UniCodeImageSpanLogitsProcessor
from .modeling_visual_tokenizer import UniCodeVisualTokenizer
from .quantization_unicode import aggregate_code_embeddings

logger = logging.get_logger(__name__)

# transformers renamed the cache argument and output field `past_key_values` -> `cache` (5.24; the old name
# warns and goes in 5.40). The name is read once from the installed version, so this file passes the
# language model the name it expects on either side of the rename and never triggers the deprecation.
CACHE_ARGUMENT = (
    "cache"
    if "cache" in {field.name for field in dataclasses.fields(BaseModelOutputWithPast)}
    else "past_key_values"
)


# A trust_remote_code load checks the third-party imports of the file it loads first (this one, for the model)
# but not of the files that file imports, and the visual tokenizer's blocks are diffusers'. The import above
# is here so transformers names the missing package ("requires ... diffusers. Run `pip install diffusers`")
# instead of a bare ModuleNotFoundError from inside modeling_visual_tokenizer.py. The model card gives the
# whole install line.

# The Auto classes a saved folder names in `auto_map` for trust_remote_code: those the package registers at
# import. pipeline("image-text-to-text") and its alias "image-to-text" ask AutoModelForImageTextToText,
# "text-generation" AutoModelForCausalLM, "feature-extraction" AutoModel. `register_for_auto_class` keeps one
# name per class, so `save_pretrained` writes the rest.
REMOTE_CODE_AUTO_CLASSES = {
    "AutoModel": "UniCodeModel",
    "AutoModelForCausalLM": "UniCodeForCausalLM",
    "AutoModelForImageTextToText": "UniCodeForCausalLM",
}


def _one_cache(cache, past_key_values):
    """The cache passed under either name (`generate` uses the installed version's; a caller may use either)."""
    if cache is not None and past_key_values is not None:
        raise ValueError("Pass the cache once: `cache` or its old name `past_key_values`, not both.")
    return cache if cache is not None else past_key_values


def _hub_name(llm) -> str | None:
    """The LLM's hub id for the model card; a local folder is no hub id (the embedded one has a known name)."""
    from .llm_utils import EMBEDDED_LLM_NAME, embedded_llm_location

    name = getattr(llm.config, "_name_or_path", None) or None
    if name is None or not os.path.exists(name):
        return name
    try:
        embedded_folder = embedded_llm_location()[0]
    except FileNotFoundError:
        return None
    return EMBEDDED_LLM_NAME if os.path.realpath(name) == os.path.realpath(embedded_folder) else None


class UniCodeDepthHead(nn.Module):
    r"""
    The depth head (`config.image_head="depth"`): a small causal transformer over the D codes of one position.

    Input at depth 0 is the LLM's hidden state before the position, projected; at depth d > 0 it is the LLM-table
    row of code d (teacher-forced in training, sampled in generation), the same rows F reads. A learned vector per
    depth index is added to each input. The output at depth d is scored by the LLM's own LM-head rows of the K
    visual ids (the codes are LLM ids; a softmax over the codes only, since nothing else may stand at a code's
    place), and predicts code d + 1. So the position's D codes factorise as p(c_1 | h) p(c_2 | h, c_1) ...
    p(c_D | h, c_<D): the same tokens, in the same order, as the flat layout writes.

    The transformer is transformers' `LlamaModel` (RoPE over depth, RMSNorm, causal attention), built from the
    depth fields of [`UniCodeConfig`] at the text model's hidden size, whatever the text model's architecture;
    its token table holds the D depth vectors, so every parameter is used (DDP without `find_unused_parameters`).
    """

    def __init__(self, config: UniCodeConfig):
        super().__init__()
        hidden = config.text_config.hidden_size
        heads = config.depth_num_attention_heads or getattr(config.text_config, "num_attention_heads", None)
        if not heads or hidden % heads:
            raise ValueError(
                f"The depth head needs depth_num_attention_heads dividing the hidden size {hidden}; got {heads}."
            )
        self.depth = config.visual_config.codes_per_position
        depth_config = LlamaConfig(
            vocab_size=self.depth,  # the depth embeddings (inputs come as embeddings)
            hidden_size=hidden,
            intermediate_size=config.depth_intermediate_size or 2 * hidden,
            num_hidden_layers=config.depth_num_layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max(self.depth, 2),
            rms_norm_eps=getattr(config.text_config, "rms_norm_eps", 1e-6),
            initializer_range=getattr(config.text_config, "initializer_range", 0.02),
            pad_token_id=None,
            bos_token_id=None,
            eos_token_id=None,
        )
        depth_config._attn_implementation = "sdpa"
        self.input_projection = nn.Linear(hidden, hidden, bias=False)
        self.transformer = LlamaModel(depth_config)

    def forward(self, hidden: torch.Tensor, code_embeds: torch.Tensor) -> torch.Tensor:
        """Teacher-forced: `hidden (N, c)` and the rows of codes 1..D-1 `(N, D-1, c)` -> outputs `(N, D, c)`."""
        inputs = torch.cat([self.input_projection(hidden)[:, None], code_embeds], dim=1)  # (N, D, c)
        inputs = inputs + self.transformer.embed_tokens.weight[: inputs.shape[1]]
        return self.transformer(inputs_embeds=inputs, use_cache=False).last_hidden_state

    def step(self, inputs: torch.Tensor, depth_index: int, cache=None):
        """One depth step of generation: `inputs (B, c)` (the LLM state at index 0, a code's row after) ->
        `(output (B, c), cache)`; the head's own key/value cache spans the D steps of one position."""
        if depth_index == 0:
            inputs = self.input_projection(inputs)
        inputs = (inputs + self.transformer.embed_tokens.weight[depth_index])[:, None]  # (B, 1, c)
        positions = torch.full((inputs.shape[0], 1), depth_index, dtype=torch.long, device=inputs.device)
        outputs = self.transformer(
            inputs_embeds=inputs, position_ids=positions, use_cache=True, **{CACHE_ARGUMENT: cache}
        )
        return outputs.last_hidden_state[:, -1], getattr(outputs, CACHE_ARGUMENT)


@dataclasses.dataclass
class UniCodeDepthWritingState:
    """Where one branch of depth-head image generation stands; kept on that branch's LLM cache.

    `generate` sees h*w*D code ids go by (its sequence, its attention mask); the LLM sees the prompt and then one
    packed id per finished position. This records the LLM's side: its own mask and next position ids, the hidden
    state that predicts the current position, and the codes of the current position written so far.
    """

    hidden: torch.Tensor  # (B, c)
    attention_mask: torch.Tensor  # (B, L_llm)
    next_position: torch.Tensor  # (B,)
    codes: torch.Tensor  # (B, d)
    code_head: tuple  # the LM head's (weight, bias) rows of the visual ids, gathered once per image
    head_cache: Any = None
    positions_written: int = 0


class UniCodePreTrainedModel(PreTrainedModel):
    config_class = UniCodeConfig
    config: UniCodeConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = [CACHE_ARGUMENT]
    _no_split_modules = ["UniCodeVisualTokenizer"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True


class UniCodeModel(UniCodePreTrainedModel):
    """The backbone: the language model (any `AutoModel`) and the frozen visual tokenizer.

    It turns `input_ids` into input embeddings (text ids through the LLM table, image positions as F of
    their codes' LLM rows) and returns the language model's output, `last_hidden_state` first.
    """

    def __init__(self, config: UniCodeConfig):
        super().__init__(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.visual_tokenizer = UniCodeVisualTokenizer(config.visual_config)
        self.visual_tokenizer.requires_grad_(False)
        self.post_init()

    def train(self, mode: bool = True):
        # The visual tokenizer is frozen in Stage II (SPEC 5); in train mode its codebook would move by
        # EMA every time pixel_values were encoded, so it stays in eval whatever the trainer asks.
        super().train(mode)
        self.visual_tokenizer.eval()
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def image_input_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """Positions that hold an image the model reads (packed ids or `<image>` placeholders)."""
        return (ids >= PACKED_CODE_OFFSET) | (ids == self.config.image_token_id)

    def image_embeddings(self, codes: torch.LongTensor) -> torch.FloatTensor:
        """`(..., D)` LLM ids -> `(..., c)`: F over the LLM's own (trainable) input-embedding rows."""
        rows = self.get_input_embeddings()(codes)  # (..., D, c)
        return aggregate_code_embeddings(rows, self.config.image_aggregation)

    @torch.no_grad()
    def encode_images(self, pixel_values: torch.FloatTensor) -> torch.LongTensor:
        """Pixels `(N, 3, H, W)` in [-1, 1] -> code maps `(N, h, w, D)` with the frozen visual tokenizer."""
        return self.visual_tokenizer.encode(pixel_values).codes

    def embed_inputs(self, input_ids: torch.LongTensor, pixel_values: torch.FloatTensor | None = None):
        """Input embeddings `(B, L, c)` for ids that may hold packed image ids or `<image>` placeholders."""
        embedding = self.get_input_embeddings()
        packed = input_ids >= PACKED_CODE_OFFSET
        placeholders = input_ids == self.config.image_token_id
        text = ~self.image_input_mask(input_ids)
        if text.any() and (
            int(input_ids[text].min()) < 0 or int(input_ids[text].max()) >= embedding.num_embeddings
        ):
            bad = (
                input_ids[text & ((input_ids < 0) | (input_ids >= embedding.num_embeddings))]
                .unique()[:5]
                .tolist()
            )
            raise ValueError(
                f"input_ids holds ids outside the vocabulary of {embedding.num_embeddings} (e.g. {bad}); images belong "
                "in input_ids as the processor writes them (UniCodeProcessor)."
            )
        inputs_embeds = embedding(input_ids.masked_fill(~text, 0))  # image positions are overwritten below
        if packed.any():
            codes = self.visual_tokenizer.unpack_codes(input_ids[packed])  # (n, D)
            inputs_embeds = inputs_embeds.masked_scatter(
                packed[..., None], self.image_embeddings(codes).to(inputs_embeds)
            )
        if placeholders.any() or pixel_values is not None:
            if pixel_values is None:
                raise ValueError(
                    f"input_ids has {int(placeholders.sum())} <image> placeholder positions but no pixel_values were "
                    "given; call the processor with the images (it writes their codes into input_ids)."
                )
            codes = self.encode_images(pixel_values.to(self.visual_tokenizer.dtype))  # (N, h, w, D)
            image_embeds = self.image_embeddings(codes.flatten(0, 2))  # (N*h*w, c)
            if image_embeds.shape[0] != int(placeholders.sum()):
                raise ValueError(
                    f"input_ids has {int(placeholders.sum())} <image> placeholder positions but pixel_values holds "
                    f"{codes.shape[0]} image(s) x {self.config.image_seq_length} positions = {image_embeds.shape[0]}."
                )
            inputs_embeds = inputs_embeds.masked_scatter(
                placeholders[..., None], image_embeds.to(inputs_embeds)
            )
        return inputs_embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        past_key_values=None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        cache (`Cache`, *optional*): the key/value cache; `past_key_values`, its name before transformers 5.24, is
            accepted too, and the language model is passed it under the name the installed transformers uses.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        cache = _one_cache(cache, past_key_values)
        self._check_length((input_ids if input_ids is not None else inputs_embeds).shape[1], cache)
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, pixel_values)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **{**kwargs, CACHE_ARGUMENT: cache, "return_dict": True},
        )

    def _check_length(self, new_positions: int, cache) -> None:
        """Refuse a sequence longer than the LLM's positions before attention allocates for it.

        RoPE models run past `max_position_embeddings` without complaint, but a 100,000-token prompt would ask
        the attention for gigabytes; this is a clear error instead of an out-of-memory kill.
        """
        limit = getattr(self.config.text_config, "max_position_embeddings", None)
        seen = cache.get_seq_length() if cache is not None and hasattr(cache, "get_seq_length") else 0
        if limit is not None and seen + new_positions > limit:
            raise ValueError(
                f"The sequence is {seen + new_positions} positions long ({seen} cached + {new_positions} new), over "
                f"the language model's {limit} (max_position_embeddings). Shorten the prompt, or pass "
                f"truncation=True, max_length=... to the processor (and keep max_new_tokens within the limit)."
            )


class UniCodeForCausalLM(UniCodePreTrainedModel, GenerationMixin):
    r"""
    UniCode: a causal LM whose visual vocabulary is its own vocabulary.

    Understanding is `generate` on the processor's output; text-to-image is
    `generate(..., generation_mode="image", guidance_scale=...)` followed by `processor.decode_images`.

    Example:

    ```python
    >>> import torch
    >>> from transformers_unicode import UniCodeForCausalLM, UniCodeVisualTokenizer
    >>> visual_tokenizer = UniCodeVisualTokenizer.from_pretrained("runs/tokenizer")
    >>> model, processor = UniCodeForCausalLM.from_llm("embedded", visual_tokenizer, return_processor=True)
    >>> inputs = processor(text="A picture of a red apple", return_tensors="pt")
    >>> torch.manual_seed(0)
    >>> ids = model.generate(**inputs, generation_mode="image", guidance_scale=3.0)
    >>> images = processor.decode_images(ids)   # [PIL.Image]
    ```
    """

    # The tokenizer and processor builders `from_llm` uses, registered by the package (transformers_unicode/
    # assembly.py) so that this file never imports the processing layer; None in a trust_remote_code copy.
    assembly: dict | None = None

    def __init__(self, config: UniCodeConfig):
        super().__init__(config)
        self.model = UniCodeModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        # The tie's source is the language model's embedding, whose name depends on the architecture
        # (Llama `embed_tokens`, GPT-2 `wte`, ...), so the declared tie is found rather than hard-coded.
        embedding = self.model.language_model.get_input_embeddings()
        name = next(n for n, m in self.model.language_model.named_modules() if m is embedding)
        self._tied_weights_keys = {"lm_head.weight": f"model.language_model.{name}.weight"}
        self.depth_head = UniCodeDepthHead(config) if config.image_head == "depth" else None
        # Set by `generate(generation_mode="image")` for the depth head: forward then runs the LLM once per position.
        self._writing_image = False
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    @property
    def visual_tokenizer(self) -> UniCodeVisualTokenizer:
        return self.model.visual_tokenizer

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        image_span_mask: torch.Tensor | None = None,
        skip_logits: bool | None = None,
        past_key_values=None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        cache (`Cache`, *optional*): the key/value cache (`past_key_values` before transformers 5.24; either name
            is accepted, and the output carries it under the installed version's name).
        labels (`torch.LongTensor` of shape `(B, L)`, *optional*): next-token targets, -100 where ignored.
            Positions of images the model reads are never targets and are ignored whatever they hold; the
            codes of an image the model writes are ordinary targets.
        image_span_mask (`torch.Tensor`, *optional*): the processor's mask, accepted so that `model(**inputs)`
            works; spans are recognised from the ids themselves.
        skip_logits (`bool`, *optional*): compute the loss from the supervised positions only and return no
            logits. Defaults to `True` in training mode when `labels` are given (Liger's convention): the
            vocabulary-wide head then runs on the answer tokens alone, and its logits never span the whole
            sequence (SmolLM2 on a CPU: 1.13-1.16x faster steps, benchmarks/sft_head.py).
        """
        if self._writing_image:
            if labels is not None or inputs_embeds is not None or input_ids is None:
                raise ValueError(
                    "Depth-head image generation takes input_ids only (no labels, no inputs_embeds)."
                )
            return self._depth_writing_step(
                input_ids, pixel_values, attention_mask, position_ids, _one_cache(cache, past_key_values)
            )
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=_one_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        written = None
        if labels is not None:
            if self.depth_head is not None:
                # The depth head's targets: packed ids in the labels are images the model writes (the collator
                # leaves only those; see `UniCodeDataCollator(image_head="depth")`).
                written = labels.masked_fill(labels < PACKED_CODE_OFFSET, -100)
            labels = labels.masked_fill(self.model.image_input_mask(labels), -100)
        if skip_logits is None:
            skip_logits = self.training and labels is not None
        if written is not None:
            logits = None if skip_logits else self.lm_head(hidden_states)
            loss = self.depth_supervised_loss(
                hidden_states, labels, written, kwargs.get("num_items_in_batch")
            )
        elif skip_logits:
            if labels is None:
                raise ValueError("skip_logits=True computes a loss only; pass labels.")
            logits, loss = None, self.supervised_loss(hidden_states, labels, kwargs.get("num_items_in_batch"))
        else:
            keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            logits = self.lm_head(hidden_states[:, keep, :])
            loss = None
            if labels is not None:
                loss = self.loss_function(logits, labels, self.config.text_config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **{CACHE_ARGUMENT: getattr(outputs, CACHE_ARGUMENT)},
        )

    def supervised_loss(self, hidden_states, labels, num_items_in_batch=None) -> torch.Tensor:
        """Next-token cross-entropy with the LM head applied to the supervised positions only.

        Equal to the full-logits loss (`ForCausalLMLoss`: a mean over targets, or a sum over
        `num_items_in_batch` under gradient accumulation); a batch without targets gives a zero that still
        reaches every parameter, as DDP needs.
        """
        targets = labels[:, 1:].to(hidden_states.device)
        supervised = targets != -100
        logits = self.lm_head(hidden_states[:, :-1][supervised])  # (n_supervised, V)
        total = nn.functional.cross_entropy(logits.float(), targets[supervised], reduction="sum")
        if num_items_in_batch is None:
            return total / supervised.sum().clamp(min=1)
        return total / torch.as_tensor(num_items_in_batch, device=total.device)

    def depth_supervised_loss(self, hidden_states, labels, written, num_items_in_batch=None) -> torch.Tensor:
        """The loss of Eq. 6 with the depth head: every answer token of the flat layout, scored once.

        Text targets (`labels`, packed ids removed) are scored by the LM head as in [`supervised_loss`]. Each
        written position (`written`: its packed id where the model writes one, -100 elsewhere) is predicted from the
        LLM's hidden state one step before it: the depth head, teacher-forced with the position's own codes, gives
        the D code distributions. The result is the mean over text targets and D codes per written position (or
        their sum over `num_items_in_batch`, which then counts a written position as D items; the Stage II trainer
        counts so), the same normalisation as the flat head's loss over the same tokens.
        """
        targets = labels[:, 1:].to(hidden_states.device)
        supervised = targets != -100
        text_logits = self.lm_head(hidden_states[:, :-1][supervised])  # (n_text, V)
        total = nn.functional.cross_entropy(text_logits.float(), targets[supervised], reduction="sum")
        packed = written[:, 1:].to(hidden_states.device)
        positions = packed != -100
        codes = self.visual_tokenizer.unpack_codes(packed[positions]).to(hidden_states.device)  # (n, D)
        before = hidden_states[:, :-1][positions]  # (n, c): the state that predicts each written position
        if codes.shape[0]:
            outputs = self.depth_head(
                before, self.get_input_embeddings()(codes[:, :-1]).to(before)
            )  # (n, D, c)
            code_logits = nn.functional.linear(outputs, *self.code_head())  # (n, D, K)
            rows = self.visual_tokenizer.codebook.rows_of(codes).to(hidden_states.device)  # (n, D) in [0, K)
            total = total + nn.functional.cross_entropy(
                code_logits.flatten(0, 1).float(), rows.flatten(), reduction="sum"
            )
        else:
            # No image written in this batch: one dummy position weighted 0, so that every depth-head parameter
            # still gets a (zero) gradient, as DDP needs on every rank (attention cannot run on zero rows).
            dummy = (
                self.visual_tokenizer.codebook.visual_ids[:1]
                .to(hidden_states.device)
                .expand(1, codes.shape[1])
            )
            outputs = self.depth_head(hidden_states[:1, 0], self.get_input_embeddings()(dummy[:, :-1]))
            total = total + 0.0 * outputs.sum()
        if num_items_in_batch is None:
            return total / (supervised.sum() + codes.numel()).clamp(min=1)
        return total / torch.as_tensor(num_items_in_batch, device=total.device)

    def code_head(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The depth head's output layer: the LM head's `(weight, bias)` rows of the K visual ids, `(K, c)`.

        Scoring the codes only (not the whole vocabulary) is what makes a depth step cheap when K is a small part
        of the vocabulary (2,048 of SmolLM2's 49,155 ids in the benchmarks), and the rows stay the LLM's own.
        """
        visual_ids = self.visual_tokenizer.codebook.visual_ids.to(self.lm_head.weight.device)
        bias = self.lm_head.bias[visual_ids] if self.lm_head.bias is not None else None
        return self.lm_head.weight[visual_ids], bias

    # ---- generation ------------------------------------------------------------------------------
    def image_span_processor(self) -> UniCodeImageSpanLogitsProcessor:
        return UniCodeImageSpanLogitsProcessor(
            visual_ids=self.visual_tokenizer.codebook.visual_ids,
            span_length=self.config.image_generation_length,
            image_start_token_id=self.config.image_start_token_id,
            image_end_token_id=self.config.image_end_token_id,
            vocab_size=self.config.text_config.vocab_size,
        )

    def _depth_writing_step(self, input_ids, pixel_values, attention_mask, position_ids, cache):
        """One `generate` step of depth-head image generation: next-token logits `(B, 1, V)` and the cache.

        `generate` (and the unconditional branch of its CFG processor, which calls the model with its own cache)
        feeds the image's h*w*D code ids one at a time, exactly as for the flat head. Here a code that leaves its
        position unfinished costs one depth-head step; the D-th code of a position is packed and read by the LLM
        in one step (the same F as for reading), whose hidden state starts the next position. So an image costs
        h*w LLM steps after the prompt. `generate` cannot take these steps itself: its sequence, mask and cache
        advance together one id at a time, so the LLM's own mask and positions are kept here, on the LLM cache.
        """
        depth, positions = self.config.visual_config.codes_per_position, self.config.image_seq_length
        state = getattr(cache, "unicode_depth_state", None)
        if state is None:  # prefill: the prompt, which ends with <|image_start|>
            if not bool((input_ids[:, -1] == self.config.image_start_token_id).all()):
                raise ValueError(
                    "Depth-head image generation starts from a prompt that ends with <|image_start|> (for CFG, "
                    "negative_prompt_ids must end with it too)."
                )
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            seen = cache.get_seq_length() if cache is not None else 0
            outputs = self.model(
                input_ids=input_ids,
                pixel_values=pixel_values,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
            )
            cache = getattr(outputs, CACHE_ARGUMENT)
            next_position = (
                position_ids[:, -1] + 1
                if position_ids is not None
                else torch.full_like(input_ids[:, 0], seen + input_ids.shape[1])
            )
            state = UniCodeDepthWritingState(
                hidden=outputs.last_hidden_state[:, -1],
                attention_mask=attention_mask,
                next_position=next_position,
                codes=input_ids[:, :0],
                code_head=self.code_head(),
            )
            cache.unicode_depth_state = state
            logits = self._depth_step_logits(state, None)
        elif state.positions_written == positions:  # the image is complete: whatever follows is read as text
            self._llm_step(state, input_ids[:, -1:], cache)
            logits = self.lm_head(state.hidden)
        else:
            code = input_ids[:, -1]
            state.codes = torch.cat([state.codes, code[:, None]], dim=1)
            if state.codes.shape[1] < depth:
                logits = self._depth_step_logits(state, code)
            else:
                packed = self.visual_tokenizer.pack_codes(state.codes)[:, None]  # (B, 1)
                self._llm_step(state, packed, cache)
                state.codes, state.positions_written = state.codes[:, :0], state.positions_written + 1
                # The LM head runs only where its logits are used (the closing marker after the last position):
                # on SmolLM2 it is a quarter of an LLM step.
                if state.positions_written < positions:
                    logits = self._depth_step_logits(state, None)
                else:
                    logits = self.lm_head(state.hidden)
        return CausalLMOutputWithPast(logits=logits[:, None], **{CACHE_ARGUMENT: cache})

    def _llm_step(self, state: UniCodeDepthWritingState, ids: torch.LongTensor, cache) -> None:
        """One LLM step on `ids (B, 1)` (a packed position or a text id) at the LLM's own position."""
        state.attention_mask = torch.cat([state.attention_mask, torch.ones_like(ids)], dim=1)
        outputs = self.model(
            input_ids=ids,
            attention_mask=state.attention_mask,
            position_ids=state.next_position[:, None],
            cache=cache,
            use_cache=True,
        )
        state.hidden, state.next_position = outputs.last_hidden_state[:, -1], state.next_position + 1

    def _depth_step_logits(
        self, state: UniCodeDepthWritingState, code: torch.LongTensor | None
    ) -> torch.Tensor:
        """Logits `(B, V)` of the position's next code: depth index 0 from the LLM state, then from the last code.

        The head scores the K codes; `generate` and its processors work on vocabulary-wide scores, so the other ids
        get the lowest finite value (the span processor then excludes them; a finite value, not -inf, because CFG
        subtracts two log-softmaxes and -inf - -inf would be NaN).
        """
        if code is None:
            output, state.head_cache = self.depth_head.step(state.hidden, 0, None)
        else:
            row = self.get_input_embeddings()(code).to(state.hidden)
            output, state.head_cache = self.depth_head.step(row, state.codes.shape[1], state.head_cache)
        code_logits = nn.functional.linear(output, *state.code_head)  # (B, K)
        lowest = torch.finfo(code_logits.dtype).min
        logits = code_logits.new_full((output.shape[0], self.lm_head.out_features), lowest)
        visual_ids = self.visual_tokenizer.codebook.visual_ids.to(logits.device)
        return logits.index_copy_(1, visual_ids, code_logits)

    def generate(
        self,
        inputs=None,
        generation_config=None,
        logits_processor=None,
        generation_mode: str = "text",
        **kwargs,
    ):
        r"""
        [`GenerationMixin.generate`] with image spans kept well formed (only visual ids inside a span,
        exactly h*w*D of them, then the closing marker).

        Args:
            generation_mode (`str`, *optional*, defaults to `"text"`): `"image"` opens an image span after the
                prompt (Janus's convention) and writes exactly one image: `max_new_tokens` is set to h*w*D + 1 and
                sampling is on unless `do_sample=False` is passed. Seed with `torch.manual_seed` for
                reproducible images.
            guidance_scale (`float`, *optional*): classifier-free guidance, transformers' own
                `UnbatchedClassifierFreeGuidanceLogitsProcessor`; the unconditional branch reads
                `negative_prompt_ids`, by default just the image-start marker. 1.0 (or `None`) is no guidance.

        With the depth head (`config.image_head="depth"`) image generation returns the same h*w*D code ids, sampled
        by the same `generate` (its sampling, seeding, CFG and the span processor act on each code as for the flat
        head), but the LLM runs once per position, h*w times after the prompt, and the depth head once per code.
        """
        if generation_mode not in ("text", "image"):
            raise ValueError(f"generation_mode must be 'text' or 'image'; got {generation_mode!r}.")
        prompt = inputs if inputs is not None else kwargs.get("input_ids")
        if prompt is not None and bool((prompt >= PACKED_CODE_OFFSET).any()):
            config = generation_config or self.generation_config
            for name, neutral in (("repetition_penalty", 1.0), ("no_repeat_ngram_size", 0)):
                if kwargs.get(name, getattr(config, name, None)) not in (None, neutral):
                    # Both index the scores by the prompt's ids, and a packed image id is no column of them.
                    raise ValueError(
                        f"{name} cannot be used on a prompt that holds an image the model reads (packed ids); "
                        "leave it unset for image prompts."
                    )
        processors = LogitsProcessorList(logits_processor or [])
        processors.append(self.image_span_processor())
        if generation_mode == "image":
            input_ids = inputs if inputs is not None else kwargs.pop("input_ids", None)
            if input_ids is None or input_ids.shape[-1] == 0:
                raise ValueError("Image generation needs a prompt: pass input_ids from the processor.")
            attention_mask = kwargs.pop("attention_mask", None)
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            start = self.config.image_start_token_id
            if not bool((input_ids[:, -1] == start).all()):
                column = torch.full_like(input_ids[:, :1], start)
                input_ids = torch.cat([input_ids, column], dim=1)
                attention_mask = torch.cat([attention_mask, torch.ones_like(column)], dim=1)
            kwargs.update(
                attention_mask=attention_mask, max_new_tokens=self.config.image_generation_length + 1
            )
            kwargs.pop("max_length", None)
            kwargs.setdefault("do_sample", True)
            inputs = input_ids
            if self.depth_head is not None:
                config = generation_config or self.generation_config
                if kwargs.get("num_beams", getattr(config, "num_beams", 1) or 1) > 1:
                    raise ValueError(
                        "Depth-head image generation samples or decodes greedily; num_beams must be 1."
                    )
                if kwargs.get("use_cache", True) is False:
                    raise ValueError(
                        "Depth-head image generation needs the key/value cache; leave use_cache on."
                    )
                kwargs["use_cache"] = True
                self._writing_image = True
                try:
                    return super().generate(
                        inputs=inputs,
                        generation_config=generation_config,
                        logits_processor=processors,
                        **kwargs,
                    )
                finally:
                    self._writing_image = False
        return super().generate(
            inputs=inputs, generation_config=generation_config, logits_processor=processors, **kwargs
        )

    # ---- assembly and saving -----------------------------------------------------------------------
    @classmethod
    def from_llm(
        cls,
        llm_or_path,
        visual_tokenizer: UniCodeVisualTokenizer,
        tokenizer=None,
        gguf_file: str | None = None,
        base_model: str | None = None,
        training_datasets: list[str] | None = None,
        return_processor: bool = False,
        **config_kwargs,
    ):
        """Assemble UniCode from a pretrained causal LM and a Stage I visual tokenizer built from it.

        The LLM's vocabulary grows by the three image markers (`<image>`, `<|image_start|>`,
        `<|image_end|>`); visual codes stay the LLM's own ids.

        Args:
            llm_or_path (`PreTrainedModel` or `str`): a causal LM, a folder or hub id, or `"embedded"` (SmolLM2).
            visual_tokenizer (`UniCodeVisualTokenizer`): its codes must be ids of this LLM.
            tokenizer (`PreTrainedTokenizerBase`, *optional*): the LLM's tokenizer (or a `UniCodeTokenizer`);
                loaded with the LLM when `llm_or_path` is a path.
            base_model, training_datasets: recorded in the config for the model card.
            return_processor (`bool`, *optional*, defaults to `False`): also return the matching
                `UniCodeProcessor`.
            config_kwargs: further [`UniCodeConfig`] fields, e.g. `image_head="depth"`, `depth_num_layers=2`.
        """
        from .llm_utils import load_llm

        if cls.assembly is None:  # a trust_remote_code copy of this file loads models, it never assembles one
            raise ImportError(
                "UniCodeForCausalLM.from_llm needs the transformers_unicode package installed (and imported)."
            )
        if isinstance(llm_or_path, (str, os.PathLike)):
            llm, loaded_tokenizer = load_llm(llm_or_path, gguf_file=gguf_file)
            tokenizer = tokenizer or loaded_tokenizer
        else:
            llm = llm_or_path
        if tokenizer is None:
            raise ValueError(
                "from_llm needs the LLM's tokenizer to add the image markers; pass tokenizer=..."
            )
        vocab_size, hidden_size = llm.get_input_embeddings().weight.shape
        visual_config = visual_tokenizer.config
        if (visual_config.vocab_size, visual_config.embedding_dim) != (vocab_size, hidden_size):
            raise ValueError(
                f"The visual tokenizer was built for a {visual_config.vocab_size} x {visual_config.embedding_dim} "
                f"table but this LLM's is {vocab_size} x {hidden_size}; build it with "
                "UniCodeVisualTokenizer.from_llm(this LLM)."
            )
        tokenizer = cls.assembly["tokenizer"](tokenizer)  # the LLM's tokenizer with the three image markers
        # Mean resizing draws the marker rows from a normal around the table's mean with torch's global generator,
        # which starts from a random seed in each process: draw them from a fixed seed, so an assembly is a function
        # of its inputs (a LoRA checkpoint does not carry these rows; --resume re-assembles them) and the caller's
        # random state is left as it was.
        weight = llm.get_input_embeddings().weight
        with torch.random.fork_rng(devices=[weight.device] if weight.device.type == "cuda" else []):
            torch.manual_seed(0)
            llm.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        config = UniCodeConfig(
            text_config=llm.config,
            visual_config=visual_config,
            image_token_id=tokenizer.image_token_id,
            image_start_token_id=tokenizer.image_start_token_id,
            image_end_token_id=tokenizer.image_end_token_id,
            base_model=base_model or _hub_name(llm),
            training_datasets=training_datasets,
            **config_kwargs,
        )
        # Built on the meta device and then handed the real modules, so a 7B LLM is never allocated twice.
        with torch.device("meta"):
            model = cls(config)
        model.model.language_model = llm.base_model
        model.model.visual_tokenizer = visual_tokenizer.eval().requires_grad_(False)
        model.lm_head = llm.get_output_embeddings()
        if (
            model.depth_head is not None
        ):  # new weights: built for real, from a fixed seed like the marker rows
            with torch.random.fork_rng(devices=[weight.device] if weight.device.type == "cuda" else []):
                torch.manual_seed(0)
                with torch.device(weight.device):
                    model.depth_head = UniCodeDepthHead(config).to(weight.dtype)
                for module in model.depth_head.modules():
                    if isinstance(module, (nn.Linear, nn.Embedding)):
                        model._init_weights(module)
        model.generation_config = llm.generation_config
        if config.tie_word_embeddings:
            model.tie_weights()
        model.eval()  # as from_pretrained returns it
        if not return_processor:
            return model
        return model, cls.assembly["processor"](visual_tokenizer, tokenizer)

    def model_card(self, repo: str = "."):
        """A `huggingface_hub.ModelCard` whose metadata and usage code match this model (loaded from `repo`).

        When the model was loaded from a folder that carries the quickstart's measurements (`report.json`), the
        card gives those figures, so `push_to_hub` does not replace a measured card with an unmeasured one.
        """
        from .model_card import build_model_card, read_report

        return build_model_card(self.config, repo=repo, report=read_report(self.name_or_path))

    def save_pretrained(self, save_directory, *args, **kwargs):
        """The standard save, plus a model card (README.md) unless the folder already has one.

        When the class is registered for remote code (the package does it at import; a trust_remote_code load
        does it too), `auto_map` names every class of `REMOTE_CODE_AUTO_CLASSES`, so pipelines find the model
        without the package.
        """
        if self._auto_class is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.update({auto: f"{module}.{name}" for auto, name in REMOTE_CODE_AUTO_CLASSES.items()})
            self.config.auto_map = auto_map
        result = super().save_pretrained(save_directory, *args, **kwargs)
        readme = os.path.join(save_directory, "README.md")
        if not os.path.exists(readme):
            self.model_card().save(readme)
        return result

    def push_to_hub(self, repo_id: str, *args, **kwargs):
        """The standard `push_to_hub`; then the UniCode model card replaces the generic one that transformers
        writes for a repository without a card (it builds that card before calling `save_pretrained`)."""
        result = super().push_to_hub(repo_id, *args, **kwargs)
        card = self.model_card(repo=repo_id)  # the usage code loads from the repository itself
        card.push_to_hub(repo_id, token=kwargs.get("token"), commit_message="UniCode model card")
        return result


__all__ = ["UniCodeDepthHead", "UniCodeForCausalLM", "UniCodeModel", "UniCodePreTrainedModel"]
