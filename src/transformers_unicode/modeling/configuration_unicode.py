"""Configurations of transformers_unicode models."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

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
        dead_code_threshold (`float`, *optional*, defaults to 0.0): EMA count under which a code is restarted
            from a random encoder output; 0 disables restarts.
        l1_weight, l2_weight (`float`, *optional*, default to 1.0): pixel reconstruction losses.
        commitment_weight (`float`, *optional*, defaults to 0.25): weight of ||z - sg(zq)||^2.
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
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    commitment_weight: float = 0.25
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


__all__ = ["UniCodeVisualTokenizerConfig"]
