"""Configurations of transformers_unicode models."""

from __future__ import annotations

import math

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Packed image ids (see `UniCodeVisualTokenizer.pack_codes`) start here: far above any vocabulary, low
# enough that K**D more values still fit in int64 for the usual sizes (49k codes x D=4, 6k codes x D=5).
PACKED_CODE_OFFSET = 1 << 40
_INT64_MAX = (1 << 63) - 1


def check_packing_capacity(num_codes: int, codes_per_position: int) -> None:
    """Packed ids are base-K integers of D digits: K**D must fit in int64 above the offset."""
    if PACKED_CODE_OFFSET + num_codes**codes_per_position > _INT64_MAX:
        largest = int((_INT64_MAX - PACKED_CODE_OFFSET) ** (1 / codes_per_position))
        raise ValueError(
            f"{num_codes} visual codes x D={codes_per_position} codes per position do not fit one int64 input id "
            f"per image position; use num_visual_codes <= {largest} or fewer codes per position."
        )


QUANTIZER_KINDS = ("vq", "rq", "hq", "mcq")
PROJECTION_KINDS = ("linear", "attention")


class UniCodeVisualTokenizerConfig(PreTrainedConfig):
    r"""
    Configuration of [`UniCodeVisualTokenizer`]: a convolutional encoder/decoder (diffusers' VAE blocks)
    around a quantizer whose codebook is a set of rows of an LLM's input-embedding table.

    Args:
        image_size (`int`, *optional*, defaults to 64): side of the square input images.
        num_channels (`int`, *optional*, defaults to 3): image channels.
        latent_size (`int`, *optional*, defaults to 8): side of the code map (h = w).
        patch_size (`int`, *optional*, defaults to 4): pixels folded into channels (pixel unshuffle) before the
            encoder and unfolded after the decoder, so the convolutions run at `image_size / patch_size`; on a
            CPU this is the difference between ~1 s and ~10 s a step at 64 px.
        block_out_channels (`list[int]`, *optional*, defaults to `(128, 256)`): channels of the encoder
            blocks (the decoder mirrors them). The encoder downsamples between blocks, so
            `image_size / patch_size / 2 ** (len - 1)` must equal the feature-map side (`latent_size`, or twice
            it for HQ).
        layers_per_block (`int`, *optional*, defaults to 1): ResNet layers per encoder block.
        norm_num_groups (`int`, *optional*, defaults to 16): GroupNorm groups in the VAE blocks.
        mid_block_add_attention (`bool`, *optional*, defaults to `False`): self-attention in the mid block.
        embedding_dim (`int`, *optional*, defaults to 576): dimension of the LLM embedding rows (c).
        vocab_size (`int`, *optional*, defaults to 49152): size of the LLM vocabulary.
        num_visual_codes (`int`, *optional*, defaults to 49152): how many LLM ids are visual codes; the ids
            themselves are chosen by [`UniCodeVisualTokenizer.from_llm`] and saved with the weights.
        quantizer (`str`, *optional*, defaults to `"rq"`): one of `"vq"`, `"rq"`, `"hq"`, `"mcq"`.
        codes_per_position (`int`, *optional*, defaults to 4): D, the codes stacked at one position (RQ depth;
            MCQ sub-codebooks; fixed to 1 for VQ and 5 for HQ).
        projection (`str`, *optional*, defaults to `"linear"`): `"linear"` (1x1 convolutions) or `"attention"`
            (UniTok's attention projection) between the encoder channels and the embedding dimension.
        projection_heads (`int`, *optional*, defaults to 4): heads of the attention projection.
        latent_normalization (`bool`, *optional*, defaults to `True`): normalise encoder outputs and rescale
            them to the per-dimension mean and std of the visual rows, so features start where the codes are.
        codebook_decay (`float`, *optional*, defaults to 0.99): EMA decay gamma of Eq. 2.
        dead_code_threshold (`float`, *optional*, defaults to 0.0): EMA count under which a code is restarted;
            0 disables restarts.
        dead_code_restart (`str`, *optional*, defaults to `"encoder"`): a dead code restarts from a random
            encoder output (`"encoder"`) or from its own LLM row (`"llm"`, which keeps restarts on C_L).
        unified_tolerance (`float`, *optional*, defaults to 1e-6): the codebook counts as the LLM's own rows
            (C = C_L) when ||C - C_L|| / ||C_L|| is at most this; such a tokenizer is saved without its copies of
            C (`codebook_storage="llm_rows"`), which are rebuilt from the LLM rows on load.
        codebook_storage (`str`, *optional*, defaults to `"own"`): set by `save_pretrained`: `"own"` (C is saved),
            `"llm_rows"` (C was C_L within `unified_tolerance`, so only C_L is saved) or `"llm"` (C was C_L and
            the folder refers to the LLM's table instead: `save_pretrained(..., refer_to_llm=True)`).
        llm_name_or_path (`str`, *optional*): where the LLM whose table is the codebook loads from (a folder,
            hub id, .gguf file or `"embedded"`); recorded by `from_llm` given a path, needed by `"llm"` storage.
        llm_gguf_file (`str`, *optional*): the GGUF file inside `llm_name_or_path`, if it is one.
        llm_rows_norm (`float`, *optional*): with `"llm"` storage, the Frobenius norm of C_L when saved, so a
            load from another LLM fails with a clear error instead of quantizing into the wrong rows.
        rq_level_scales (`bool`, *optional*, defaults to `False`): RQ only: level d's codes are s_d times the
            codebook rows, with s_d fit in training (D numbers), so one codebook at the LLM table's scale can
            serve residuals that shrink from level to level (SPEC 3.2).
        l1_weight, l2_weight (`float`, *optional*, default to 1.0): pixel reconstruction losses.
        commitment_weight (`float`, *optional*, defaults to 0.25): weight of ||z - sg(zq)||^2.
        code_entropy_weight (`float`, *optional*, defaults to 0.0): VQ and RQ: weight of the code-usage entropy
            loss (each feature's soft assignment confident, the batch's spread over the codes), which spreads the
            encoder's outputs over a codebook that cannot move itself (C = C_L); 0 disables it.
        code_entropy_temperature (`float`, *optional*, defaults to 1.0): the soft assignment is
            softmax(-||z - c||^2 / temperature), in the squared-distance units of the codebook rows.
        adversarial_weight (`float`, *optional*, defaults to 0.0): patch-GAN hinge loss weight; 0 disables it.
        adversarial_start_step (`int`, *optional*, defaults to 0): training forward passes before it starts.
        discriminator_channels (`int`, *optional*, defaults to 32): width of the patch-GAN discriminator.
        perceptual_weight (`float`, *optional*, defaults to 0.0): perceptual loss weight, used only with
            `perceptual_model_path`.
        perceptual_model_path (`str`, *optional*): a TorchScript file on disk mapping images in [-1, 1] to a
            feature tensor or a list of them. Nothing is downloaded.

    Example:

    ```python
    >>> from transformers_unicode import UniCodeVisualTokenizerConfig, UniCodeVisualTokenizer
    >>> config = UniCodeVisualTokenizerConfig(image_size=32, latent_size=4, embedding_dim=32, vocab_size=100,
    ...                                       num_visual_codes=64, patch_size=2, block_out_channels=(16, 32, 32))
    >>> tokenizer = UniCodeVisualTokenizer(config)
    ```
    """

    model_type = "unicode_visual_tokenizer"
    base_config_key = "visual_config"

    image_size: int = 64
    num_channels: int = 3
    latent_size: int = 8
    patch_size: int = 4
    block_out_channels: list[int] | tuple[int, ...] = (128, 256)
    layers_per_block: int = 1
    norm_num_groups: int = 16
    mid_block_add_attention: bool = False
    embedding_dim: int = 576
    vocab_size: int = 49152
    num_visual_codes: int = 49152
    quantizer: str = "rq"
    codes_per_position: int = 4
    projection: str = "linear"
    projection_heads: int = 4
    latent_normalization: bool = True
    codebook_decay: float = 0.99
    dead_code_threshold: float = 0.0
    dead_code_restart: str = "encoder"
    unified_tolerance: float = 1e-6
    codebook_storage: str = "own"
    llm_name_or_path: str | None = None
    llm_gguf_file: str | None = None
    llm_rows_norm: float | None = None
    rq_level_scales: bool = False
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    commitment_weight: float = 0.25
    code_entropy_weight: float = 0.0
    code_entropy_temperature: float = 1.0
    adversarial_weight: float = 0.0
    adversarial_start_step: int = 0
    discriminator_channels: int = 32
    perceptual_weight: float = 0.0
    perceptual_model_path: str | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.quantizer not in QUANTIZER_KINDS:
            raise ValueError(f"quantizer must be one of {QUANTIZER_KINDS}; got {self.quantizer!r}.")
        if self.projection not in PROJECTION_KINDS:
            raise ValueError(f"projection must be one of {PROJECTION_KINDS}; got {self.projection!r}.")
        if self.quantizer == "vq":
            self.codes_per_position = 1
        elif self.quantizer == "hq":
            self.codes_per_position = 5
        elif self.quantizer == "mcq" and self.embedding_dim % self.codes_per_position:
            raise ValueError(
                f"MCQ splits the embedding dimension {self.embedding_dim} into codes_per_position="
                f"{self.codes_per_position} slices; choose a divisor."
            )
        if self.codes_per_position < 1:
            raise ValueError(f"codes_per_position must be >= 1; got {self.codes_per_position}.")
        if self.codebook_storage not in ("own", "llm_rows", "llm"):
            raise ValueError(
                f"codebook_storage must be 'own', 'llm_rows' or 'llm'; got {self.codebook_storage!r}."
            )
        if self.dead_code_restart not in ("encoder", "llm"):
            raise ValueError(f"dead_code_restart must be 'encoder' or 'llm'; got {self.dead_code_restart!r}.")
        if self.code_entropy_weight < 0 or self.code_entropy_temperature <= 0:
            raise ValueError(
                "code_entropy_weight must be >= 0 and code_entropy_temperature > 0; got "
                f"{self.code_entropy_weight} and {self.code_entropy_temperature}."
            )
        if self.code_entropy_weight > 0 and self.quantizer not in ("vq", "rq"):
            raise ValueError(
                f"The code entropy loss is a VQ and RQ option; this tokenizer's quantizer is {self.quantizer!r}."
            )
        if self.rq_level_scales and self.quantizer != "rq":
            raise ValueError(
                f"rq_level_scales is an RQ option; this tokenizer's quantizer is {self.quantizer!r}."
            )
        if not 0 < self.num_visual_codes <= self.vocab_size:
            raise ValueError(
                f"num_visual_codes must be in [1, vocab_size={self.vocab_size}]; got {self.num_visual_codes}."
            )
        feature_size = self.latent_size * self.spatial_factor
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} must divide image_size={self.image_size}.")
        stem_size = self.image_size // self.patch_size
        downsamples = math.log2(stem_size / feature_size) if feature_size else -1
        if downsamples != int(downsamples) or int(downsamples) != len(self.block_out_channels) - 1:
            raise ValueError(
                f"image_size={self.image_size} / patch_size={self.patch_size} -> feature map {feature_size} "
                f"needs log2({stem_size}/{feature_size}) + 1 encoder blocks; block_out_channels has "
                f"{len(self.block_out_channels)}."
            )
        if not 0.0 < self.codebook_decay < 1.0:
            raise ValueError(f"codebook_decay must be in (0, 1); got {self.codebook_decay}.")
        super().__post_init__(**kwargs)

    def to_dict(self):
        output = super().to_dict()
        # transformers' custom_object_save treats every class whose name contains "Tokenizer" as a text
        # tokenizer and writes a (slow, fast) pair into auto_map; this model and its config are plain classes.
        if isinstance(output.get("auto_map"), dict):
            output["auto_map"] = {
                key: next(ref for ref in value if ref) if isinstance(value, (list, tuple)) else value
                for key, value in output["auto_map"].items()
            }
        return output

    @property
    def spatial_factor(self) -> int:
        """How much finer the quantized feature map is than the code map (HQ's bottom level is 2x)."""
        return 2 if self.quantizer == "hq" else 1

    @property
    def num_groups(self) -> int:
        return self.codes_per_position if self.quantizer == "mcq" else 1

    @property
    def tokens_per_image(self) -> int:
        """Ids an image occupies when the LLM writes it: h * w * D."""
        return self.latent_size * self.latent_size * self.codes_per_position


IMAGE_HEADS = ("flat", "depth")
AGGREGATION_BY_QUANTIZER = {"vq": "sum", "rq": "sum", "hq": "hierarchical", "mcq": "concat"}


class UniCodeConfig(PreTrainedConfig):
    r"""
    Configuration of [`UniCodeForCausalLM`]: any causal LM plus the visual tokenizer whose codes are that
    LM's token ids.

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*): the causal LM's config (any architecture that
            `AutoModel.from_config` builds; Llama by default).
        visual_config (`dict` or `UniCodeVisualTokenizerConfig`, *optional*): the visual tokenizer's config.
        image_token_id (`int`, *optional*): id of `<image>`, the placeholder a prompt uses for an image and that
            the processor expands (into packed codes, or into h*w placeholders when pixel values are passed).
        image_start_token_id, image_end_token_id (`int`, *optional*): ids of the markers around every image
            span, read or written.
        image_aggregation (`str`, *optional*): F, how the D code embeddings of a position become the one vector
            the LLM reads: `"sum"` (VQ, RQ), `"concat"` (MCQ: slice d of code d), `"hierarchical"` (HQ: top plus
            the mean of its bottom block). Defaults to the rule of the visual tokenizer's quantizer.
        base_model (`str`, *optional*): the hub id of the LLM this model was built from, for the model card.
        training_datasets (`list[str]`, *optional*): datasets the model was trained on, for the model card.
        tie_word_embeddings (`bool`, *optional*): tie the LM head to the input embeddings; follows the text
            config when that ties them.
        image_head (`str`, *optional*, defaults to `"flat"`): how the model writes an image. `"flat"` (UniCode's
            layout, the reference): the LLM writes h*w*D code ids, one LLM step each. `"depth"` (UniTok, VILA-U,
            RQ-Transformer): the LLM takes one step per position, reading each written position as the packed id it
            reads images with, and a small depth transformer predicts the position's D codes from the LLM's hidden
            state, autoregressively over depth.
        depth_num_layers (`int`, *optional*, defaults to 2): layers of the depth transformer (`image_head="depth"`).
        depth_num_attention_heads (`int`, *optional*): its attention heads; defaults to the text model's.
        depth_intermediate_size (`int`, *optional*): its MLP width; defaults to twice the text hidden size. Its
            hidden size is the text model's (its inputs are the LLM's hidden state and the codes' LLM rows, and its
            outputs are scored by the LLM's own LM head, since the codes are LLM ids).

    Example:

    ```python
    >>> from transformers import LlamaConfig
    >>> from transformers_unicode import UniCodeConfig, UniCodeVisualTokenizerConfig
    >>> config = UniCodeConfig(text_config=LlamaConfig(vocab_size=131, hidden_size=32, intermediate_size=64,
    ...                                                num_hidden_layers=2, num_attention_heads=2),
    ...                        visual_config=UniCodeVisualTokenizerConfig(image_size=16, latent_size=2, patch_size=2,
    ...                                                                   block_out_channels=(16, 16, 16), norm_num_groups=8,
    ...                                                                   embedding_dim=32, vocab_size=128, num_visual_codes=64),
    ...                        image_token_id=128, image_start_token_id=129, image_end_token_id=130)
    >>> config.image_seq_length, config.image_generation_length
    (4, 16)
    ```
    """

    model_type = "unicode"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "visual_config": SubConfigSpec(config_class=UniCodeVisualTokenizerConfig),
    }

    text_config: dict | PreTrainedConfig | None = None
    visual_config: dict | PreTrainedConfig | None = None
    image_token_id: int | None = None
    image_start_token_id: int | None = None
    image_end_token_id: int | None = None
    image_aggregation: str | None = None
    base_model: str | None = None
    training_datasets: list[str] | None = None
    tie_word_embeddings: bool = False
    image_head: str = "flat"
    depth_num_layers: int = 2
    depth_num_attention_heads: int | None = None
    depth_intermediate_size: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.image_head not in IMAGE_HEADS:
            raise ValueError(f"image_head must be one of {IMAGE_HEADS}; got {self.image_head!r}.")
        if self.depth_num_layers < 1:
            raise ValueError(f"depth_num_layers must be >= 1; got {self.depth_num_layers}.")
        if self.image_aggregation is None:
            self.image_aggregation = AGGREGATION_BY_QUANTIZER[self.visual_config.quantizer]
        if self.image_aggregation not in AGGREGATION_BY_QUANTIZER.values():
            raise ValueError(
                f"image_aggregation must be one of {sorted(set(AGGREGATION_BY_QUANTIZER.values()))}; "
                f"got {self.image_aggregation!r}."
            )
        # As in LLaVA: causal LMs record the tie in their own config, the composite follows it.
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        check_packing_capacity(self.visual_config.num_visual_codes, self.visual_config.codes_per_position)
        text_hidden = getattr(self.text_config, "hidden_size", None)
        if text_hidden is not None and text_hidden != self.visual_config.embedding_dim:
            raise ValueError(
                f"The visual tokenizer's codes are {self.visual_config.embedding_dim}-d rows of an LLM table but the "
                f"text model's hidden size is {text_hidden}: build the tokenizer from this LLM "
                "(`UniCodeVisualTokenizer.from_llm`)."
            )

    @property
    def image_seq_length(self) -> int:
        """LLM positions an image occupies when the model reads it: h * w."""
        return self.visual_config.latent_size**2

    @property
    def image_generation_length(self) -> int:
        """Ids the model writes for one image: h * w * D (with either head: the depth head's D codes of a
        position are written out as D ids)."""
        return self.visual_config.tokens_per_image

    @property
    def image_llm_steps(self) -> int:
        """LLM positions a written image takes: h * w * D for the flat head, h * w for the depth head."""
        return self.image_seq_length if self.image_head == "depth" else self.image_generation_length


__all__ = ["PACKED_CODE_OFFSET", "UniCodeConfig", "UniCodeVisualTokenizerConfig", "check_packing_capacity"]
