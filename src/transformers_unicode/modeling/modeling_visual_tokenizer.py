"""UniCodeVisualTokenizer: images <-> maps of LLM token ids.

Top to bottom: output types, the attention projection (UniTok), the patch-GAN discriminator, the
pretrained base, and the tokenizer itself (encoder -> projection -> quantizer -> projection -> decoder).
The encoder and decoder are diffusers' VAE `Encoder`/`Decoder`; only what diffusers does not have is
written here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import Decoder, Encoder
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, logging

from .configuration_unicode import PACKED_CODE_OFFSET, UniCodeVisualTokenizerConfig, check_packing_capacity
from .quantization_unicode import UnifiedCodebook, build_quantizer, validate_visual_ids

logger = logging.get_logger(__name__)


@dataclass
class UniCodeVisualTokenizerEncoderOutput(ModelOutput):
    """
    Args:
        codes (`torch.LongTensor` of shape `(B, h, w, D)`): LLM token ids, D stacked codes per position.
        quantized (`torch.FloatTensor` of shape `(B, c, h', w')`): quantized features (straight-through).
        features (`torch.FloatTensor` of shape `(B, c, h', w')`): encoder features before quantization.
        commitment_loss (`torch.FloatTensor`): ||z - sg(zq)||^2.
        code_entropy_loss (`torch.FloatTensor`, *optional*): the code-usage entropy loss, in training with
            `code_entropy_weight` > 0.
    """

    codes: torch.LongTensor | None = None
    quantized: torch.FloatTensor | None = None
    features: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    code_entropy_loss: torch.FloatTensor | None = None


@dataclass
class UniCodeVisualTokenizerOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor`): the Stage I loss, the sum of the weighted terms below.
        reconstruction (`torch.FloatTensor` of shape `(B, 3, H, W)`): decoded pixels (about [-1, 1]).
        codes (`torch.LongTensor` of shape `(B, h, w, D)`): LLM token ids.
        reconstruction_loss, commitment_loss, code_entropy_loss, perceptual_loss, generator_loss,
            discriminator_loss (`torch.FloatTensor`): the unweighted terms, for logging.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    code_entropy_loss: torch.FloatTensor | None = None
    perceptual_loss: torch.FloatTensor | None = None
    generator_loss: torch.FloatTensor | None = None
    discriminator_loss: torch.FloatTensor | None = None


class UniCodeAttentionProjection(nn.Module):
    """UniTok's attention projection: multi-head self-attention over positions whose heads are averaged
    instead of concatenated, so the output width is chosen freely (compression or expansion of
    channels around the quantizer). A linear shortcut keeps it an easy identity-like map at init.
    """

    def __init__(self, in_channels: int, out_channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.out_channels = out_channels
        self.norm = nn.LayerNorm(in_channels)
        self.qkv = nn.Linear(in_channels, 3 * num_heads * out_channels)
        self.shortcut = nn.Linear(in_channels, out_channels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = hidden.shape
        tokens = hidden.flatten(2).transpose(1, 2)  # (B, L, C_in)
        qkv = self.qkv(self.norm(tokens)).view(batch, height * width, 3, self.num_heads, self.out_channels)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, C_out)
        attended = F.scaled_dot_product_attention(query, key, value).mean(
            dim=1
        )  # heads averaged: (B, L, C_out)
        out = attended + self.shortcut(tokens)
        return out.transpose(1, 2).reshape(batch, self.out_channels, height, width)


class UniCodePatchDiscriminator(nn.Module):
    """A small PatchGAN (pix2pix / VQGAN style): one real/fake logit per image patch."""

    def __init__(self, in_channels: int = 3, channels: int = 32, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for _ in range(1, num_layers):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1), nn.GroupNorm(8, width * 2), nn.LeakyReLU(0.2)]
            width *= 2
        layers.append(nn.Conv2d(width, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)


class UniCodeVisualTokenizerPreTrainedModel(PreTrainedModel):
    config_class = UniCodeVisualTokenizerConfig
    base_model_prefix = "visual_tokenizer"
    main_input_name = "pixel_values"
    _no_split_modules = ["UnifiedCodebook"]

    def _init_weights(self, module):
        # PyTorch's own initialisation for every layer (diffusers' VAE blocks are tuned for it); the
        # codebook is not a parameter and keeps the LLM rows it was built from.
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.LayerNorm, nn.GroupNorm)):
            module.reset_parameters()
        elif isinstance(module, UnifiedCodebook) and self.config.codebook_storage == "llm_rows":
            # Saved as C = C_L (issue 15): `from_pretrained` loaded C_L and the EMA counts, and calls this for
            # the copies it did not find; C is C_L again, and the EMA sums follow from the counts. ("llm" storage
            # holds no table at all: `from_pretrained` fills the codebook from the LLM after loading.)
            module.set_embedding(module.llm_embedding)


class UniCodeVisualTokenizer(UniCodeVisualTokenizerPreTrainedModel):
    """Encoder, quantizer into the LLM's embedding table, decoder.

    `encode(pixel_values).codes` are LLM token ids of shape `(B, h, w, D)`; `decode(codes)` gives pixels in
    [-1, 1]; `forward(pixel_values)` returns the Stage I loss. Build one whose codebook comes from a causal
    LM with [`UniCodeVisualTokenizer.from_llm`].

    Example:

    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from transformers_unicode import UniCodeVisualTokenizer, UniCodeVisualTokenizerConfig
    >>> llm = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64,
    ...                                    num_hidden_layers=1, num_attention_heads=2))
    >>> config = UniCodeVisualTokenizerConfig(image_size=32, latent_size=4, patch_size=2, block_out_channels=(16, 32, 32),
    ...                                       norm_num_groups=8)
    >>> tokenizer = UniCodeVisualTokenizer.from_llm(llm, config)
    >>> codes = tokenizer.encode(torch.rand(2, 3, 32, 32) * 2 - 1).codes   # (2, 4, 4, 4) LLM ids
    >>> pixels = tokenizer.decode(codes)                                     # (2, 3, 32, 32) in [-1, 1]
    ```
    """

    # The codebook's copies of C, which equal C_L (and C_L times the EMA counts) once the codebook is unified.
    _UNIFIED_COPIES = ("quantizer.codebook.embedding", "quantizer.codebook.embed_sum")
    _LLM_ROWS = "quantizer.codebook.llm_embedding"

    def __init__(self, config: UniCodeVisualTokenizerConfig):
        super().__init__(config)
        channels = tuple(config.block_out_channels)
        patch_channels = config.num_channels * config.patch_size**2
        self.patchify = nn.PixelUnshuffle(config.patch_size)
        self.unpatchify = nn.PixelShuffle(config.patch_size)
        self.encoder = Encoder(
            in_channels=patch_channels,
            out_channels=channels[-1],
            down_block_types=("DownEncoderBlock2D",) * len(channels),
            block_out_channels=channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            double_z=False,
            mid_block_add_attention=config.mid_block_add_attention,
        )
        self.decoder = Decoder(
            in_channels=channels[-1],
            out_channels=patch_channels,
            up_block_types=("UpDecoderBlock2D",) * len(channels),
            block_out_channels=channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            mid_block_add_attention=config.mid_block_add_attention,
        )
        if config.projection == "attention":
            self.quant_proj = UniCodeAttentionProjection(
                channels[-1], config.embedding_dim, config.projection_heads
            )
            self.post_quant_proj = UniCodeAttentionProjection(
                config.embedding_dim, channels[-1], config.projection_heads
            )
        else:
            self.quant_proj = nn.Conv2d(channels[-1], config.embedding_dim, 1)
            self.post_quant_proj = nn.Conv2d(config.embedding_dim, channels[-1], 1)
        # Placeholder rows until from_llm() or from_pretrained() fills them: the codebook is state, not
        # architecture, so it is loaded with the weights.
        codebook = self._new_codebook(
            torch.zeros(config.num_visual_codes, config.embedding_dim), torch.arange(config.num_visual_codes)
        )
        # The codebook is registered once, inside the quantizer (`self.codebook` is a view of it), so the
        # saved state has no aliased tensors.
        self.quantizer = build_quantizer(
            config.quantizer,
            codebook,
            depth=config.codes_per_position,
            level_scales=config.rq_level_scales,
            entropy_temperature=config.code_entropy_temperature if config.code_entropy_weight > 0 else None,
        )
        # Per-dimension statistics of the visual rows: encoder outputs are rescaled to them when
        # latent_normalization is on, so that features start among the codes instead of collapsing
        # onto the few rows nearest to a random init.
        self.register_buffer("latent_mean", torch.zeros(config.embedding_dim))
        self.register_buffer("latent_std", torch.ones(config.embedding_dim))
        self.register_buffer("train_forward_passes", torch.zeros((), dtype=torch.long))
        self.discriminator = (
            UniCodePatchDiscriminator(config.num_channels, config.discriminator_channels)
            if config.adversarial_weight > 0
            else None
        )
        self._perceptual = None
        if config.perceptual_weight > 0:
            self._perceptual = _load_perceptual_model(config.perceptual_model_path)
        if config.codebook_storage == "llm_rows":
            # C and its EMA sums are rebuilt from C_L on load (`_init_weights`): not missing, just not stored.
            self._keys_to_ignore_on_load_missing = list(self._UNIFIED_COPIES)
        elif config.codebook_storage == "llm":
            # C_L too is read from the LLM's table by `from_pretrained`.
            self._keys_to_ignore_on_load_missing = [*self._UNIFIED_COPIES, self._LLM_ROWS]
        self.post_init()

    def is_unified(self) -> bool:
        """C = C_L within `config.unified_tolerance` (relative Frobenius distance over the whole table)."""
        return self.codebook.unification()["llm_relative_distance"] <= self.config.unified_tolerance

    def save_pretrained(self, save_directory, *args, state_dict=None, refer_to_llm: bool = False, **kwargs):
        """`PreTrainedModel.save_pretrained`; a unified codebook (issue 15) is saved without its copies of C.

        When C = C_L within `config.unified_tolerance`, C and its EMA sums are the LLM rows and the LLM rows
        times the EMA counts, so only C_L and the counts are written (`config.codebook_storage="llm_rows"`); both
        `from_pretrained` and `load_state_dict` rebuild the copies. Otherwise everything is saved as before.

        `refer_to_llm=True` leaves C_L out too (`"llm"` storage): the folder refers to the table of the LLM at
        `config.llm_name_or_path`, which `from_pretrained` then loads (or takes as `llm=`). Only a unified
        codebook can be saved so: a codebook that moved off the table has nothing to refer to.
        """
        unified = self.is_unified()
        if refer_to_llm:
            if not unified:
                distance = self.codebook.unification()["llm_relative_distance"]
                raise ValueError(
                    f"refer_to_llm=True saves a codebook as the LLM's own rows, but this one is not: ||C - C_L|| / "
                    f"||C_L|| = {distance:.3g} > unified_tolerance={self.config.unified_tolerance:g}. Save it "
                    "without refer_to_llm (it is stored whole), or train it to C = C_L (a frozen codebook, or "
                    "CodebookSyncCallback(freeze_fraction=...))."
                )
            if not self.config.llm_name_or_path:
                raise ValueError(
                    "refer_to_llm=True needs to know where the LLM loads from: set "
                    "tokenizer.config.llm_name_or_path (and llm_gguf_file for a GGUF folder), or build the "
                    "tokenizer with UniCodeVisualTokenizer.from_llm(path)."
                )
        self.config.codebook_storage = "llm" if refer_to_llm else "llm_rows" if unified else "own"
        self.config.llm_rows_norm = float(self.codebook.llm_embedding.norm()) if refer_to_llm else None
        if unified:
            left_out = (*self._UNIFIED_COPIES, self._LLM_ROWS) if refer_to_llm else self._UNIFIED_COPIES
            state_dict = self.state_dict() if state_dict is None else state_dict
            state_dict = {key: value for key, value in state_dict.items() if key not in left_out}
        saved = super().save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)
        if refer_to_llm:  # the folder refers to the LLM; this live model still holds every table
            self.config.codebook_storage = "llm_rows"
        return saved

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, llm=None, **kwargs):
        """`PreTrainedModel.from_pretrained`; a folder saved with `refer_to_llm=True` also reads its codebook
        from the LLM's table: from `llm` (a loaded causal LM) when given, else from `config.llm_name_or_path`.
        """
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if model.config.codebook_storage == "llm":
            model._read_codebook_from_llm(llm)
        return model

    @torch.no_grad()
    def _read_codebook_from_llm(self, llm=None) -> None:
        from .llm_utils import input_embedding_table, load_llm

        config = self.config
        source = "the given llm" if llm is not None else repr(config.llm_name_or_path)
        if llm is None:
            try:
                llm, _ = load_llm(
                    config.llm_name_or_path, gguf_file=config.llm_gguf_file, load_tokenizer=False
                )
            except Exception as error:  # any load failure: say which LLM the folder needs, and how to give it
                raise OSError(
                    f"This tokenizer refers to the embedding table of the LLM at {source} "
                    f"(gguf_file={config.llm_gguf_file!r}), which did not load: {error}. Pass the loaded LLM as "
                    "UniCodeVisualTokenizer.from_pretrained(folder, llm=...)."
                ) from error
        table = input_embedding_table(llm)
        ids = self.codebook.visual_ids
        if tuple(table.shape) != (config.vocab_size, config.embedding_dim):
            raise ValueError(
                f"This tokenizer refers to a {config.vocab_size} x {config.embedding_dim} embedding table; {source} "
                f"has {tuple(table.shape)[0]} x {tuple(table.shape)[1]}. Load it with the LLM it was trained on."
            )
        rows = table[ids.to(table.device)].to(self.codebook.llm_embedding)
        norm = float(rows.norm())
        if (
            config.llm_rows_norm is not None
            and abs(norm - config.llm_rows_norm) > 1e-4 * config.llm_rows_norm
        ):
            raise ValueError(
                f"The rows of {source} at this tokenizer's visual ids are not the ones it was saved with (norm "
                f"{norm:.6g}, saved {config.llm_rows_norm:.6g}): it needs the LLM it was trained on, as saved then "
                "(a tuned LLM's rows have moved)."
            )
        self.codebook.llm_embedding.copy_(rows)
        self.codebook.set_embedding(rows)
        # The live model now holds every table again; the next save decides its storage afresh.
        config.codebook_storage = "llm_rows"

    # ---- building from an LLM ------------------------------------------------------------------
    @classmethod
    def from_llm(
        cls,
        llm_or_path,
        config: UniCodeVisualTokenizerConfig | None = None,
        visual_ids=None,
        gguf_file: str | None = None,
        tokenizer=None,
        **config_kwargs,
    ) -> UniCodeVisualTokenizer:
        """A tokenizer whose codebook is the input-embedding table of `llm_or_path`.

        Args:
            llm_or_path (`PreTrainedModel` or `str`): a causal LM, or a folder/hub id that
                `AutoModelForCausalLM.from_pretrained` loads (with `gguf_file` for GGUF checkpoints).
            config (`UniCodeVisualTokenizerConfig`, *optional*): the architecture; `embedding_dim` and
                `vocab_size` are taken from the LLM.
            visual_ids (sequence of `int`, *optional*): the LLM ids to use as codes. By default every id
                but the special tokens, or `config.num_visual_codes` of them evenly spaced when that is smaller.
            tokenizer (`PreTrainedTokenizerBase`, *optional*): the LLM's tokenizer, whose special tokens are kept
                out of the codes; loaded with the LLM when `llm_or_path` is a path. Without it only the config's
                bos/eos/pad ids are known to be special.
        """
        from .llm_utils import default_visual_ids, input_embedding_table, load_llm, special_token_ids

        if isinstance(llm_or_path, (str, os.PathLike)):
            llm, loaded_tokenizer = load_llm(llm_or_path, gguf_file=gguf_file)
            tokenizer = tokenizer or loaded_tokenizer
        else:
            llm = llm_or_path
        special_ids = special_token_ids(tokenizer)
        table = input_embedding_table(llm)
        special_ids += [
            i
            for i in (llm.config.bos_token_id, llm.config.eos_token_id, llm.config.pad_token_id)
            if isinstance(i, int)
        ]
        config = UniCodeVisualTokenizerConfig(**config_kwargs) if config is None else config
        vocab_size, embedding_dim = table.shape
        if visual_ids is None:
            requested = min(config.num_visual_codes, vocab_size) if config.num_visual_codes else vocab_size
            visual_ids = default_visual_ids(vocab_size, special_ids, requested)
        visual_ids = torch.as_tensor(list(visual_ids), dtype=torch.long)
        validate_visual_ids(visual_ids, vocab_size)
        config_dict = config.to_dict()
        config_dict.update(
            embedding_dim=embedding_dim, vocab_size=vocab_size, num_visual_codes=visual_ids.numel()
        )
        for key in ("model_type", "transformers_version"):
            config_dict.pop(key, None)
        if isinstance(llm_or_path, (str, os.PathLike)):
            # Where the table comes from: a `refer_to_llm` save needs it.
            config_dict.update(llm_name_or_path=str(llm_or_path), llm_gguf_file=gguf_file)
        config = UniCodeVisualTokenizerConfig(**config_dict)
        model = cls(config)
        model.set_codebook(table[visual_ids], visual_ids)
        return model

    @property
    def codebook(self) -> UnifiedCodebook:
        return self.quantizer.codebook

    def _new_codebook(self, llm_rows: torch.Tensor, visual_ids: torch.Tensor) -> UnifiedCodebook:
        config = self.config
        return UnifiedCodebook(
            llm_embedding=llm_rows,
            visual_ids=visual_ids,
            vocab_size=config.vocab_size,
            num_groups=config.num_groups,
            decay=config.codebook_decay,
            dead_code_threshold=config.dead_code_threshold,
            dead_code_restart=config.dead_code_restart,
        )

    @torch.no_grad()
    def set_codebook(self, llm_rows: torch.Tensor, visual_ids: torch.Tensor) -> None:
        """Make `llm_rows` (the LLM table at `visual_ids`) the codebook and its pull target."""
        self.quantizer.codebook = self._new_codebook(llm_rows, visual_ids).to(self.latent_mean.device)
        rows = self.codebook.llm_embedding
        self.latent_mean.copy_(rows.mean(dim=0))
        self.latent_std.copy_(rows.std(dim=0).clamp_min(1e-6))

    # ---- encode / decode -------------------------------------------------------------------------
    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        size, channels = self.config.image_size, self.config.num_channels
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            shape = (
                tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            )
            raise ValueError(
                f"pixel_values must be a (B, {channels}, {size}, {size}) tensor; got {shape}. Use "
                "UniCodeImageProcessor to turn images into pixel_values."
            )
        if pixel_values.shape[1] != channels:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[1]} channels but the tokenizer expects {channels} "
                "(convert images to RGB first)."
            )
        if tuple(pixel_values.shape[2:]) != (size, size):
            raise ValueError(
                f"pixel_values is {tuple(pixel_values.shape[2:])} but the tokenizer was trained on "
                f"{size}x{size} images; resize them first (UniCodeImageProcessor does)."
            )
        if not torch.isfinite(pixel_values).all():
            raise ValueError("pixel_values contains NaN or infinite values.")

    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.quant_proj(self.encoder(self.patchify(pixel_values)))  # (B, c, h', w')
        hidden = hidden.permute(0, 2, 3, 1)  # (B, h', w', c)
        if self.config.latent_normalization:
            hidden = F.layer_norm(hidden, hidden.shape[-1:]) * self.latent_std + self.latent_mean
        return hidden

    def encode(self, pixel_values: torch.Tensor, return_dict: bool = True):
        """Pixels in [-1, 1] `(B, 3, H, W)` -> `codes` `(B, h, w, D)` of LLM token ids."""
        self._check_pixels(pixel_values)
        features = self._features(pixel_values)
        quantized, codes, losses = self.quantizer.quantize(features)
        output = UniCodeVisualTokenizerEncoderOutput(
            codes=codes,
            quantized=quantized.permute(0, 3, 1, 2),
            features=features.permute(0, 3, 1, 2),
            commitment_loss=losses.commitment,
            code_entropy_loss=losses.code_entropy if torch.is_tensor(losses.code_entropy) else None,
        )
        return output if return_dict else output.to_tuple()

    def decode_quantized(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized features `(B, c, h', w')` -> pixels (unclamped, for training)."""
        return self.unpatchify(self.decoder(self.post_quant_proj(quantized)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """LLM token ids `(B, h, w, D)` -> pixels in [-1, 1] `(B, 3, H, W)`."""
        size, depth = self.config.latent_size, self.config.codes_per_position
        if (
            not isinstance(codes, torch.Tensor)
            or codes.dim() != 4
            or tuple(codes.shape[1:]) != (size, size, depth)
        ):
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes)
            raise ValueError(f"codes must be a (B, {size}, {size}, {depth}) tensor of LLM ids; got {shape}.")
        quantized = self.quantizer.embed(codes.to(self.codebook.visual_ids.device)).permute(0, 3, 1, 2)
        return self.decode_quantized(quantized).clamp(-1, 1)

    def aggregate(self, codes: torch.Tensor) -> torch.Tensor:
        """F: the one vector per position that the LLM reads for an image `(B, h, w, c)`."""
        return self.quantizer.aggregate(codes)

    # ---- one LLM input position per code-map position -------------------------------------------
    def pack_codes(self, codes: torch.Tensor) -> torch.LongTensor:
        """`(..., D)` LLM ids -> `(...)` single ids >= `PACKED_CODE_OFFSET`, one per position.

        An image the LLM *reads* occupies h*w positions, but `input_ids` holds one integer per position.
        The D codes of a position are therefore written as one integer in base K (K visual codes), offset
        far beyond any vocabulary: datasets, collators, padding and `generate` then see an ordinary id
        sequence of the right length, and the model turns each packed id back into F(its D embeddings).
        """
        depth = self.config.codes_per_position
        if codes.shape[-1] != depth:
            raise ValueError(
                f"codes must end with the D={depth} codes of a position; got shape {tuple(codes.shape)}."
            )
        check_packing_capacity(self.codebook.num_codes, depth)
        rows = self.codebook.rows_of(codes.to(self.codebook.visual_ids.device))
        packed = torch.zeros(rows.shape[:-1], dtype=torch.long, device=rows.device)
        for level in range(depth):  # Horner: ((r_1 K + r_2) K + ...) K + r_D
            packed = packed * self.codebook.num_codes + rows[..., level]
        return packed + PACKED_CODE_OFFSET

    def unpack_codes(self, packed: torch.Tensor) -> torch.LongTensor:
        """Inverse of [`pack_codes`]: `(...)` packed ids -> `(..., D)` LLM ids."""
        num_codes, depth = self.codebook.num_codes, self.config.codes_per_position
        packed = torch.as_tensor(packed, dtype=torch.long, device=self.codebook.visual_ids.device)
        value = packed - PACKED_CODE_OFFSET
        if packed.numel() and (int(value.min()) < 0 or int(value.max()) >= num_codes**depth):
            raise ValueError(
                f"Packed image ids must lie in [{PACKED_CODE_OFFSET}, {PACKED_CODE_OFFSET + num_codes**depth}) for "
                f"this tokenizer ({num_codes} codes, D={depth}); got ids from {int(packed.min())} to {int(packed.max())}."
            )
        rows = []
        for _ in range(depth):
            rows.append(value % num_codes)
            value = value // num_codes
        return self.codebook.visual_ids[torch.stack(rows[::-1], dim=-1)]

    # ---- training --------------------------------------------------------------------------------
    def forward(
        self, pixel_values: torch.Tensor, return_dict: bool = True, **kwargs
    ) -> UniCodeVisualTokenizerOutput:
        config = self.config
        encoded = self.encode(pixel_values)
        reconstruction = self.decode_quantized(encoded.quantized)
        reconstruction_loss = config.l1_weight * F.l1_loss(
            reconstruction, pixel_values
        ) + config.l2_weight * F.mse_loss(reconstruction, pixel_values)
        loss = reconstruction_loss + config.commitment_weight * encoded.commitment_loss
        if encoded.code_entropy_loss is not None:
            loss = loss + config.code_entropy_weight * encoded.code_entropy_loss
        perceptual_loss = generator_loss = discriminator_loss = None
        if self._perceptual is not None:
            perceptual_loss = _perceptual_distance(self._perceptual, reconstruction, pixel_values)
            loss = loss + config.perceptual_weight * perceptual_loss
        if self.discriminator is not None and self.training:
            self.train_forward_passes += 1
            if int(self.train_forward_passes) > config.adversarial_start_step:
                generator_loss, discriminator_loss = self._adversarial_losses(reconstruction, pixel_values)
                loss = loss + config.adversarial_weight * generator_loss + discriminator_loss
        output = UniCodeVisualTokenizerOutput(
            loss=loss,
            reconstruction=reconstruction,
            codes=encoded.codes,
            reconstruction_loss=reconstruction_loss.detach(),
            commitment_loss=encoded.commitment_loss.detach(),
            code_entropy_loss=None
            if encoded.code_entropy_loss is None
            else encoded.code_entropy_loss.detach(),
            perceptual_loss=None if perceptual_loss is None else perceptual_loss.detach(),
            generator_loss=None if generator_loss is None else generator_loss.detach(),
            discriminator_loss=None if discriminator_loss is None else discriminator_loss.detach(),
        )
        return output if return_dict else output.to_tuple()

    def _adversarial_losses(
        self, fake: torch.Tensor, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hinge losses for one optimizer over both networks (so the HF Trainer needs no second one).

        The generator term is computed through a detached copy of the discriminator's weights, so it
        moves only the tokenizer; the discriminator term sees the reconstruction detached, so it moves
        only the discriminator. Their sum is what one backward pass needs.
        """
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        generator_loss = -torch.func.functional_call(self.discriminator, frozen, (fake,)).mean()
        discriminator_loss = 0.5 * (
            F.relu(1.0 - self.discriminator(real)).mean()
            + F.relu(1.0 + self.discriminator(fake.detach())).mean()
        )
        return generator_loss, discriminator_loss


def _load_perceptual_model(path: str | None) -> torch.jit.ScriptModule:
    """A perceptual feature network from disk (TorchScript); nothing is ever downloaded."""
    if not path or not os.path.isfile(path):
        raise ValueError(
            f"perceptual_weight > 0 needs perceptual_model_path to name a TorchScript file on disk; got {path!r}. "
            "Set perceptual_weight=0 to train without the perceptual term."
        )
    model = torch.jit.load(path, map_location="cpu").eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _perceptual_distance(network, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    fake_features, real_features = network(fake), network(real)
    if isinstance(fake_features, torch.Tensor):
        fake_features, real_features = [fake_features], [real_features]
    return sum(F.mse_loss(f, r.detach()) for f, r in zip(fake_features, real_features, strict=True)) / len(
        fake_features
    )


__all__ = [
    "PACKED_CODE_OFFSET",
    "UniCodeVisualTokenizer",
    "UniCodeVisualTokenizerPreTrainedModel",
    "UniCodeVisualTokenizerOutput",
    "UniCodeVisualTokenizerEncoderOutput",
    "UniCodeAttentionProjection",
    "UniCodePatchDiscriminator",
]
