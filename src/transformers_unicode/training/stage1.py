"""Stage I: train the visual tokenizer on the HF `Trainer`, codebook tied to the LLM table.

    transformers-unicode train-tokenizer --output_dir runs/tokenizer --max_steps 1500
    transformers-unicode train-tokenizer recipe.yaml          # the same fields from a YAML file

Every field of `TokenizerTrainingArguments` and of `transformers.TrainingArguments` is a flag.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import Trainer, TrainingArguments
from transformers.utils import logging

from ..evaluation.reconstruction import evaluate_reconstruction
from ..modeling.configuration_unicode import UniCodeVisualTokenizerConfig
from ..modeling.modeling_visual_tokenizer import UniCodeVisualTokenizer
from .callbacks import CodebookSyncCallback, find_codebook
from .checkpointing import AtomicCheckpointMixin
from .io import atomic_write_json
from .reproducibility import seed_everything

logger = logging.get_logger(__name__)


@dataclass
class TokenizerTrainingArguments:
    """What to train: the LLM whose table is the codebook, the images, the architecture, the codebook mode."""

    llm: str = field(
        default="embedded",
        metadata={"help": "Causal LM folder/hub id, a .gguf file, or 'embedded' (SmolLM2-135M-Instruct)."},
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside the --llm folder."})
    dataset: str = field(
        default="openmoji",
        metadata={"help": "'openmoji', 'digits', or a folder of images (datasets' imagefolder)."},
    )
    image_size: int = field(default=64, metadata={"help": "Side of the square training images."})
    latent_size: int | None = field(
        default=None,
        metadata={
            "help": "Side of the code map (default: the encoder's output side, image_size / patch_size / "
            "2^(blocks - 1), halved for HQ's top map: 8 at 64 px, 4 at 32 px)."
        },
    )
    quantizer: str = field(default="rq", metadata={"help": "vq, rq, hq or mcq."})
    codes_per_position: int = field(default=4, metadata={"help": "D: RQ depth or MCQ sub-codebooks."})
    num_visual_codes: int = field(
        default=2048, metadata={"help": "LLM ids used as codes (evenly spaced; the vocabulary size for all)."}
    )
    patch_size: int = field(default=4, metadata={"help": "Pixels folded into channels before the encoder."})
    block_out_channels: str = field(
        default="64,128", metadata={"help": "Encoder block widths, comma separated."}
    )
    layers_per_block: int = field(default=1, metadata={"help": "ResNet layers per block."})
    projection: str = field(default="linear", metadata={"help": "linear or attention (UniTok)."})
    latent_normalization: bool = field(
        default=False, metadata={"help": "Rescale encoder outputs to the table's statistics."}
    )
    codebook_mode: str = field(default="iter", metadata={"help": "iter (Eq. 3 pull), frozen or dual."})
    sync_every: int = field(default=50, metadata={"help": "T: steps between pulls toward the LLM table."})
    sync_decay: float = field(default=0.99, metadata={"help": "gamma of Eq. 3."})
    sync_schedule: str = field(
        default="constant",
        metadata={"help": "constant (Eq. 3 as written) or linear (gamma annealed to 0: C ends at C_L)."},
    )
    sync_freeze_fraction: float | None = field(
        default=None,
        metadata={"help": "From this share of max_steps on, C = C_L exactly and the EMA is off (iter mode)."},
    )
    codebook_decay: float = field(default=0.99, metadata={"help": "gamma of the EMA of Eq. 2."})
    dead_code_threshold: float = field(
        default=1.0, metadata={"help": "EMA count under which a code is restarted; 0 = off."}
    )
    dead_code_restart: str = field(
        default="encoder",
        metadata={
            "help": "Where a dead code restarts: 'encoder' (a random encoder output) or 'llm' (its own LLM row, "
            "so restarts keep the codebook on the LLM table)."
        },
    )
    level_scales: bool = field(
        default=False,
        metadata={
            "help": "RQ: a fitted scale per level on the codebook rows (lets a codebook at C_L serve all D)."
        },
    )
    refer_to_llm: bool = field(
        default=False,
        metadata={
            "help": "Save a unified codebook (C = C_L at the end) as a reference to --llm's table instead of a "
            "copy (the folder then needs the LLM to load); a codebook that moved off the table is saved whole."
        },
    )
    commitment_weight: float = field(default=0.25, metadata={"help": "Weight of the commitment loss."})
    code_entropy_weight: float = field(
        default=0.0,
        metadata={
            "help": "VQ/RQ: weight of the code-usage entropy loss, which spreads the encoder's outputs over the "
            "codes (for a codebook held at C = C_L); 0 = off."
        },
    )
    code_entropy_temperature: float = field(
        default=1.0, metadata={"help": "Temperature of that loss's soft assignment (squared-distance units)."}
    )
    adversarial_weight: float = field(default=0.0, metadata={"help": "Patch-GAN loss weight; 0 = off."})
    train_limit: int | None = field(default=None, metadata={"help": "Use at most this many training images."})
    eval_limit: int | None = field(
        default=None, metadata={"help": "Evaluate on at most this many held-out images."}
    )
    horizontal_flip: bool = field(
        default=False, metadata={"help": "Random horizontal flips of training images."}
    )

    def code_map_side(self) -> int:
        """`latent_size`, or the side the encoder gives this image size (so `--image_size 32` alone works)."""
        if self.latent_size is not None:
            return self.latent_size
        blocks = len(self.block_out_channels.split(","))
        spatial_factor = 2 if self.quantizer == "hq" else 1  # HQ's bottom map is 2x its top (code) map
        return max(1, self.image_size // self.patch_size // 2 ** (blocks - 1) // spatial_factor)

    def tokenizer_config(self) -> UniCodeVisualTokenizerConfig:
        return UniCodeVisualTokenizerConfig(
            image_size=self.image_size,
            latent_size=self.code_map_side(),
            patch_size=self.patch_size,
            quantizer=self.quantizer,
            codes_per_position=self.codes_per_position,
            num_visual_codes=self.num_visual_codes,
            block_out_channels=tuple(int(c) for c in self.block_out_channels.split(",")),
            layers_per_block=self.layers_per_block,
            norm_num_groups=min(16, min(int(c) for c in self.block_out_channels.split(","))),
            projection=self.projection,
            latent_normalization=self.latent_normalization,
            codebook_decay=self.codebook_decay,
            dead_code_threshold=self.dead_code_threshold,
            dead_code_restart=self.dead_code_restart,
            rq_level_scales=self.level_scales,
            commitment_weight=self.commitment_weight,
            code_entropy_weight=self.code_entropy_weight,
            code_entropy_temperature=self.code_entropy_temperature,
            adversarial_weight=self.adversarial_weight,
        )


@dataclass
class TokenizerTrainerArguments(TrainingArguments):
    """`TrainingArguments` with defaults that suit the tokenizer on a CPU machine (all overridable)."""

    output_dir: str | None = field(
        default="runs/tokenizer", metadata={"help": "Where checkpoints and the tokenizer go."}
    )
    max_steps: int = field(default=4200, metadata={"help": "Optimizer steps."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Images per step and device."})
    learning_rate: float = field(default=2e-3, metadata={"help": "AdamW learning rate."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(default=50, metadata={"help": "Linear warm-up steps."})
    logging_steps: float = field(
        default=50, metadata={"help": "Steps between logs (and codebook-health windows)."}
    )
    save_steps: float = field(default=500, metadata={"help": "Steps between checkpoints."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the image column for the collator."}
    )
    use_cpu: bool = field(default=not torch.cuda.is_available(), metadata={"help": "Train on the CPU."})


# ---- images -----------------------------------------------------------------------------------------
def images_to_pixels(images, size: int) -> torch.Tensor:
    """PIL images -> (B, 3, size, size) floats in [-1, 1] (RGBA composited on white)."""
    from PIL import Image

    arrays = []
    for image in images:
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BICUBIC)
        arrays.append(np.asarray(image, dtype=np.uint8))
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return pixels / 127.5 - 1.0


def load_image_dataset(name: str, split: str, size: int, limit: int | None = None):
    """A `datasets.Dataset` with an `image` column for the named source."""
    if name == "openmoji":
        from ..data import load_openmoji

        return load_openmoji(split=split, size=size, limit=limit)
    if name == "digits":
        from ..data import load_digits_images

        return load_digits_images(split=split, size=size, limit=limit)
    if os.path.isdir(name):
        import datasets

        dataset_dict = datasets.load_dataset("imagefolder", data_dir=name)
        dataset = (
            dataset_dict[split]
            if split in dataset_dict
            else dataset_dict["train"].train_test_split(test_size=0.1, seed=0)[
                "train" if split == "train" else "test"
            ]
        )
        return dataset.select(range(min(limit, len(dataset)))) if limit else dataset
    raise ValueError(f"Unknown dataset {name!r}: use 'openmoji', 'digits' or a folder of images.")


@dataclass
class PixelCollator:
    """Batches of `image` records -> `pixel_values` in [-1, 1], with optional random horizontal flips."""

    image_size: int
    horizontal_flip: bool = False

    def __call__(self, records):
        pixels = images_to_pixels([r["image"] for r in records], self.image_size)
        if self.horizontal_flip:
            flip = torch.rand(pixels.shape[0]) < 0.5
            pixels[flip] = pixels[flip].flip(-1)
        return {"pixel_values": pixels}


class UniCodeTokenizerTrainer(AtomicCheckpointMixin, Trainer):
    """The HF Trainer with atomic checkpoints, plus codebook health (usage, perplexity, dead codes,
    distance to the LLM rows) in every training log."""

    def log(self, logs, *args, **kwargs):
        if "loss" in logs:  # training logs; the window is the logging interval
            logs.update(find_codebook(self.model).health(reset=True))
        super().log(logs, *args, **kwargs)


def train_tokenizer(
    args: TokenizerTrainingArguments,
    training_args: TrainingArguments,
    resume_from_checkpoint: str | bool | None = None,
    llm=None,
    callbacks=None,
    trainer_out: dict | None = None,
    llm_tokenizer=None,
) -> dict:
    """Train a visual tokenizer; save it to `training_args.output_dir`; return held-out metrics.

    `llm` skips loading `args.llm` (an already loaded model; `llm_tokenizer`, its tokenizer, tells its
    special tokens); `callbacks` are added to the Trainer;
    `trainer_out`, a dict, receives the Trainer under "trainer" for callers that need its state.
    """
    from ..modeling.llm_utils import load_llm

    started = time.time()
    # Cheap checks first: a bad flag should fail in a second, not after the LLM has loaded.
    config = args.tokenizer_config()
    callback = CodebookSyncCallback(
        mode=args.codebook_mode,
        sync_every=args.sync_every,
        decay=args.sync_decay,
        pull_schedule=args.sync_schedule,
        freeze_fraction=args.sync_freeze_fraction,
    )
    train_set = load_image_dataset(args.dataset, "train", args.image_size, args.train_limit)
    eval_set = load_image_dataset(args.dataset, "test", args.image_size, args.eval_limit)
    if llm is None:
        logger.info("Loading the LLM whose embedding table is the codebook: %s", args.llm)
        llm, llm_tokenizer = load_llm(args.llm, gguf_file=args.gguf_file)
    # The Trainer seeds in its __init__, after the model exists: seed the random init here (reproducibility.py).
    seed_everything(training_args)
    tokenizer = UniCodeVisualTokenizer.from_llm(llm, config, tokenizer=llm_tokenizer)
    tokenizer.config.llm_name_or_path, tokenizer.config.llm_gguf_file = args.llm, args.gguf_file
    del llm
    # Channels-last weights let oneDNN run the convolutions in its native layout: 1.09-1.14x faster steps on
    # 2 CPU cores (benchmarks/tokenizer_step.py). Saved weights load back in the default layout.
    tokenizer.to(memory_format=torch.channels_last)
    trainer = UniCodeTokenizerTrainer(
        model=tokenizer,
        args=training_args,
        train_dataset=train_set,
        data_collator=PixelCollator(args.image_size, args.horizontal_flip),
        callbacks=[callback, *(callbacks or [])],
    )
    if trainer_out is not None:
        trainer_out["trainer"] = trainer
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    train_seconds = time.time() - started
    metrics = evaluate_reconstruction(tokenizer, images_to_pixels(eval_set["image"], args.image_size))
    unification = tokenizer.codebook.unification()
    metrics.update(
        train_seconds=round(train_seconds, 1),
        steps=trainer.state.global_step,
        num_visual_codes=tokenizer.codebook.num_codes,
        eval_images=len(eval_set),
        **unification,
    )
    # The saved config says how unified this tokenizer is, so a reader of the folder need not recompute it.
    tokenizer.config.codebook_unification = {key: round(value, 6) for key, value in unification.items()}
    if trainer.is_world_process_zero():
        refer = args.refer_to_llm and tokenizer.is_unified()
        if args.refer_to_llm and not refer:
            logger.warning(
                "--refer_to_llm: the codebook ended off the LLM's table (llm_relative_distance %.3g), so it is "
                "saved whole. Train it to C = C_L (--codebook_mode frozen or --sync_freeze_fraction) to refer.",
                unification["llm_relative_distance"],
            )
        trainer.save_model(training_args.output_dir)
        if refer:  # save_model cannot pass save_pretrained's arguments: write the weights and config again
            tokenizer.save_pretrained(training_args.output_dir, refer_to_llm=True)
        atomic_write_json(os.path.join(training_args.output_dir, "eval_results.json"), metrics)
    return metrics


__all__ = [
    "TokenizerTrainingArguments",
    "UniCodeTokenizerTrainer",
    "PixelCollator",
    "TokenizerTrainerArguments",
    "images_to_pixels",
    "load_image_dataset",
    "train_tokenizer",
]
