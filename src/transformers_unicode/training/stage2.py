"""Stage II: instruction tuning with TRL's SFTTrainer, the visual tokenizer frozen (SPEC section 5).

    transformers-unicode sft --config examples/sft_openmoji.yaml
    accelerate launch --config_file examples/accelerate/ddp.yaml -m transformers_unicode.cli sft --config ...

Every field of `SFTScriptArguments`, of TRL's `SFTConfig` and of TRL's `ModelConfig` (LoRA: `use_peft`,
`lora_r`, ...) is a flag or a YAML key (TRL's `TrlParser`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import datasets
import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, Trainer
from transformers.utils import logging
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

from ..modeling.configuration_unicode import PACKED_CODE_OFFSET, UniCodeConfig, UniCodeVisualTokenizerConfig
from .checkpointing import AtomicCheckpointMixin
from .collator import UniCodeDataCollator
from .io import atomic_write_json
from .reproducibility import seed_everything
from .sft_data import (
    build_decompression_dataset,
    label_balance_weights,
    mixture_indices,
    tokenize_conversations,
)

logger = logging.get_logger(__name__)

DEFAULT_MIXTURE = "caption=1,group=2,subgroup=0.5,text_to_image=2,decompression=0.5"
LLAVA_DEFAULT_MIXTURE = "conversation=1,decompression=0.25"


@dataclass
class SFTScriptArguments:
    """What to tune and on which data (the model's folder is TRL's `--model_name_or_path`)."""

    llm: str = field(
        default="embedded",
        metadata={
            "help": "Causal LM to assemble with when model_name_or_path is a Stage I tokenizer ('embedded' = SmolLM2)."
        },
    )
    dataset: str = field(
        default="openmoji",
        metadata={"help": "'openmoji' (the embedded default) or a LLaVA conversation JSON/JSONL file."},
    )
    image_folder: str | None = field(default=None, metadata={"help": "Images of the LLaVA JSON file."})
    text_to_image: str | None = field(
        default=None,
        metadata={
            "help": "Text-to-image pairs: a folder of images with metadata.jsonl (file_name, caption)."
        },
    )
    mixture: str = field(
        default=DEFAULT_MIXTURE,
        metadata={
            "help": "Sampling ratios, name=ratio. OpenMoji: caption, group, subgroup, text_to_image, group_to_image, "
            "decompression; "
            "your data: conversation, text_to_image, decompression (default conversation=1,decompression=0.25)."
        },
    )
    num_samples: int = field(
        default=2000, metadata={"help": "Samples in the mixture (parts repeat or are subsampled)."}
    )
    decompression_segments: int = field(
        default=4, metadata={"help": "T: parts an image is cut into (Eq. 5)."}
    )
    train_limit: int | None = field(default=None, metadata={"help": "Use at most this many training images."})
    balance_groups: float = field(
        default=0.0,
        metadata={
            "help": "OpenMoji: draw the training images with group g (n_g emoji) in proportion to "
            "n_g ** (1 - balance): 0 = natural frequencies (People & Body: 2,193 of 3,570), "
            "1 = every CLDR group equally."
        },
    )
    mirror_images: bool = field(
        default=False,
        metadata={
            "help": "OpenMoji: add a left-right mirrored copy of every training emoji to the tasks that do not "
            "name it (group, subgroup, group_to_image, decompression): twice the distinct images a group. "
            "Caption and text_to_image keep the originals (a mirrored 'left arrow' points right)."
        },
    )
    skip_invalid_records: bool = field(
        default=False, metadata={"help": "Skip malformed records (counted and logged) instead of stopping."}
    )
    dataset_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where tokenised samples are cached (default: OUTPUT_DIR/dataset_cache)."},
    )
    eval_limit: int = field(
        default=64, metadata={"help": "Held-out emoji for the before/after evaluation; 0 = off."}
    )
    eval_draw_limit: int = field(
        default=8, metadata={"help": "Training names drawn for the text-to-image check."}
    )
    merge_lora: bool = field(
        default=True, metadata={"help": "Save the LoRA-merged model (adapters are kept too)."}
    )
    depth_head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "With the depth head: its own learning rate (it starts from random weights, the LLM does not; "
            "default: the run's learning rate)."
        },
    )

    def __post_init__(self):
        if self.depth_head_learning_rate is not None and self.depth_head_learning_rate <= 0:
            raise ValueError(
                f"--depth_head_learning_rate must be positive, got {self.depth_head_learning_rate}."
            )
        if not 0.0 <= self.balance_groups <= 1.0:
            raise ValueError(
                f"--balance_groups must lie in [0, 1] (0 = natural frequencies, 1 = every group equally); "
                f"got {self.balance_groups}."
            )


class UniCodeSFTTrainer(AtomicCheckpointMixin, SFTTrainer):
    """TRL's SFTTrainer with atomic checkpoints and the loss from the supervised positions only.

    TRL scores every position through its chunked LM head except on CUDA/XPU with Triton, where it keeps
    only supervised positions; UniCode's own loss (`skip_logits`) keeps only them everywhere (1.4-1.7x faster
    steps than TRL's head on a CPU for SmolLM2, benchmarks/sft_head.py). Evaluation keeps TRL's path.
    """

    def __init__(self, *args, depth_head_learning_rate: float | None = None, **kwargs):
        self.depth_head_learning_rate = depth_head_learning_rate
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with the depth head's parameters in groups of their own learning rate.

        transformers has no per-module rate, so the Trainer's groups (decay / no decay) are split here, before any
        step: the depth head starts from random weights while the LLM is pretrained. The schedulers scale every
        group's rate by the same factor, so the ratio holds through warm-up and decay.
        """
        optimizer = super().create_optimizer(model)
        if self.depth_head_learning_rate is None:
            return optimizer
        # A peft model forwards the attribute to its base model (the head is then a module to save).
        head = getattr(self.accelerator.unwrap_model(self.model), "depth_head", None)
        if head is None:
            raise ValueError(
                "--depth_head_learning_rate needs a model with the depth head (image_head='depth'); this one "
                "writes images with the LM head. Leave it unset."
            )
        head_ids = {id(p) for p in head.parameters()}
        for group in list(optimizer.param_groups):
            moved = [p for p in group["params"] if id(p) in head_ids]
            if not moved or group.get("depth_head"):  # already split (the Trainer may call this twice)
                continue
            group["params"] = [p for p in group["params"] if id(p) not in head_ids]
            settings = {key: value for key, value in group.items() if key != "params"}
            optimizer.add_param_group(
                {**settings, "params": moved, "lr": self.depth_head_learning_rate, "depth_head": True}
            )
            if not group["params"]:
                optimizer.param_groups.remove(group)
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # TRL's evaluation head scores the LM head alone; with the depth head the codes are the depth head's, so
        # the model's own loss is the only right one there too.
        if not self.model.training and self._image_head() == "flat":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    def _image_head(self) -> str:
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        return getattr(config, "image_head", "flat")

    def _get_num_items_in_batch(self, batch_samples, device):
        """The Trainer's count of targets for `num_items_in_batch`; with the depth head a written position (one
        packed id in the labels) is D targets, its D codes, as in [`UniCodeForCausalLM.depth_supervised_loss`]."""
        if self._image_head() == "depth" and batch_samples and "labels" in batch_samples[0]:
            config = self.accelerator.unwrap_model(self.model).config
            extra = config.visual_config.codes_per_position - 1
            counted = []
            for batch in batch_samples:
                shifted = batch["labels"][..., 1:]
                written = (shifted >= PACKED_CODE_OFFSET).flatten()
                # The base class counts the entries of `shift_labels` that are not -100: the labels, plus D - 1
                # entries for every written position. This copy only feeds the count.
                more = torch.where(written, 0, -100).repeat(extra)
                counted.append(
                    {"labels": batch["labels"], "shift_labels": torch.cat([shifted.flatten(), more])}
                )
            batch_samples = counted
        return super()._get_num_items_in_batch(batch_samples, device)


def load_model_and_processor(model_args: ModelConfig, script_args: SFTScriptArguments):
    """A saved UniCode folder, or a Stage I tokenizer folder assembled with `script_args.llm`."""
    from ..modeling.modeling_unicode import UniCodeForCausalLM
    from ..modeling.modeling_visual_tokenizer import UniCodeVisualTokenizer
    from ..processing.processing_unicode import UniCodeProcessor

    path = model_args.model_name_or_path
    if not path:
        raise ValueError("Give --model_name_or_path: a UniCode folder, or a Stage I visual tokenizer folder.")
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"No model folder at {path!r}; train one with `transformers-unicode train-tokenizer`."
        )
    config = AutoConfig.from_pretrained(path)
    if isinstance(config, UniCodeVisualTokenizerConfig):
        visual_tokenizer = UniCodeVisualTokenizer.from_pretrained(path)
        return UniCodeForCausalLM.from_llm(script_args.llm, visual_tokenizer, return_processor=True)
    if isinstance(config, UniCodeConfig):
        return UniCodeForCausalLM.from_pretrained(
            path, dtype=torch.float32
        ), UniCodeProcessor.from_pretrained(path)
    raise ValueError(
        f"{path} holds a {type(config).__name__} ({config.model_type}); Stage II needs a UniCode model or a Stage I "
        "visual tokenizer folder."
    )


def parse_mixture(text: str) -> dict[str, float]:
    ratios = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            ratios[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"Mixture item {item!r} is not name=ratio (e.g. {DEFAULT_MIXTURE}).") from None
    return ratios


def lora_target_modules(model, names=None) -> str:
    """A peft regex for LoRA on the language model only (never the frozen visual tokenizer).

    `names` are module names such as `q_proj` (TRL's `--lora_target_modules`; `all-linear` for every linear
    layer of the LLM); by default peft's own choice for the LLM's architecture.
    """
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if isinstance(names, str) and names != "all-linear":
        return names  # already a regex: the user's word
    language_model = model.model.language_model
    if names == "all-linear" or (names is not None and "all-linear" in names):
        names = sorted(
            {
                n.rsplit(".", 1)[-1]
                for n, m in language_model.named_modules()
                if isinstance(m, torch.nn.Linear)
            }
        )
    if not names:
        model_type = model.config.text_config.model_type
        names = DEFAULTS.get(model_type)
        if not names:
            raise ValueError(f"No default LoRA modules for a {model_type} LLM; pass --lora_target_modules.")
    return r"model\.language_model\..*\.(" + "|".join(sorted(names)) + ")"


def build_sft_dataset(
    script_args: SFTScriptArguments, processor, cache_dir: str | None, report: dict, image_head: str = "flat"
) -> datasets.Dataset:
    """The Stage II mixture, tokenised once (cached) so training never runs the visual encoder.

    The mixture is drawn first and only the records it uses are tokenised: a bounded run on a large
    source does not pay for encoding every image. `image_head` is the model's: it decides how written images
    are laid out (see `sft_data.encode_conversation`).
    """
    if script_args.mixture == DEFAULT_MIXTURE and script_args.dataset != "openmoji":
        # The default names OpenMoji's tasks; for a user's data it means: all of it, plus decompression.
        script_args.mixture = LLAVA_DEFAULT_MIXTURE + (
            ",text_to_image=1" if script_args.text_to_image else ""
        )
    ratios = parse_mixture(script_args.mixture)
    if script_args.balance_groups and script_args.dataset != "openmoji":
        raise ValueError(
            "--balance_groups balances OpenMoji's CLDR groups; a LLaVA data set has none. Leave it at 0."
        )
    if script_args.mirror_images and script_args.dataset != "openmoji":
        raise ValueError(
            "--mirror_images mirrors OpenMoji's renders for the tasks that do not name them; a LLaVA data set's "
            "answers may depend on left and right. Leave it off."
        )
    sources: dict[str, datasets.Dataset] = {}  # conversation records, or images for decompression
    images, weights = None, {}  # weights: the parts drawn in proportion to a weight per record
    if script_args.dataset == "openmoji":
        from ..data.openmoji import load_openmoji
        from ..data.openmoji_conversations import (
            NAMING_TASKS,
            OPENMOJI_TASKS,
            openmoji_conversations,
            with_mirrored_copies,
        )

        size = processor.visual_tokenizer.config.image_size
        named = load_openmoji(split="train", size=size, limit=script_args.train_limit)
        # The tasks that do not name the emoji (and decompression, set below) read `images`: with mirroring,
        # the originals then their mirrored copies, so the repeats of a rare group's emoji differ (issue 14).
        images = with_mirrored_copies(named) if script_args.mirror_images else named
        if script_args.balance_groups:  # every OpenMoji task has one record per image, in its images' order
            per_named, per_image = (
                label_balance_weights(x["group"], script_args.balance_groups) for x in (named, images)
            )
            weights = {
                task: per_named if task in NAMING_TASKS else per_image
                for task in (*OPENMOJI_TASKS, "decompression")
            }
        for task in OPENMOJI_TASKS:
            if ratios.get(task, 0) > 0:
                sources[task] = openmoji_conversations(task, images=named if task in NAMING_TASKS else images)
    else:
        from ..data.conversations import load_llava_conversations

        if script_args.image_folder is None:
            raise ValueError("A LLaVA JSON dataset needs --image_folder (where its images are).")
        sources["conversation"] = load_llava_conversations(
            script_args.dataset,
            script_args.image_folder,
            skip_invalid=script_args.skip_invalid_records,
            report=report.setdefault("conversation", {}),
        )
    if script_args.text_to_image is not None:
        from ..data.conversations import load_text_to_image_pairs

        sources["text_to_image"] = load_text_to_image_pairs(
            script_args.text_to_image,
            skip_invalid=script_args.skip_invalid_records,
            report=report.setdefault("text_to_image", {}),
        )
        weights.pop("text_to_image", None)  # the user's pairs replace OpenMoji's: no groups to balance
        if images is None:
            pairs = sources["text_to_image"]
            images = pairs.map(lambda r: {"image": r["images"][0]}, remove_columns=pairs.column_names)
    if ratios.get("decompression", 0) > 0:
        if images is None:  # the first image of each conversation that has one
            records = sources["conversation"]
            images = records.filter(lambda r: len(r["images"]) > 0).map(
                lambda r: {"image": r["images"][0]}, remove_columns=records.column_names
            )
        sources["decompression"] = images
    plan = mixture_indices(
        {name: len(source) for name, source in sources.items()},
        {name: ratio for name, ratio in ratios.items() if name in sources or ratio > 0},
        num_samples=script_args.num_samples,
        seed=0,
        weights=weights,
    )
    parts = []
    for name, indices in plan.items():
        if len(indices) == 0:  # a small plan can leave a task out; an empty map would have no columns
            continue
        used = np.unique(indices)  # tokenise each record once, then repeat it as the plan says
        subset = sources[name].select(used)
        if name == "decompression":
            tokenized = build_decompression_dataset(
                subset,
                processor,
                num_segments=script_args.decompression_segments,
                cache_dir=cache_dir,
                image_head=image_head,
            )
        else:
            tokenized = tokenize_conversations(
                subset, processor, task=name, cache_dir=cache_dir, image_head=image_head
            )
        tokenized = tokenized.select(np.searchsorted(used, indices))
        parts.append(tokenized.add_column("length", batching_lengths(name, tokenized["input_ids"])))
    return datasets.concatenate_datasets(parts).shuffle(seed=0).flatten_indices()


def batching_lengths(task: str, input_ids: list[list[int]]) -> list[int]:
    """The `length` column that transformers' `train_sampling_strategy="group_by_length"` sorts by.

    Grouping by length keeps a group question (~110 tokens) out of a batch padded to a drawing (~280) or a
    decompression (~440): 8 % padding on the quickstart's mixture instead of 40 % (README). But within an
    OpenMoji task a sample's exact length is set by its label (the group name's token count; the group named
    in a class-conditional prompt), so sorting by it fills batches with one answer, and a step then teaches
    that answer to every image in it: the model learnt the prior and nothing else (issue 14, README). Every
    sample of such a task gets the task's longest length instead, so batches still hold one task, in random
    order within it. A LLaVA conversation's length says nothing of its answer; it keeps its own.
    """
    lengths = [len(ids) for ids in input_ids]
    if task == "conversation" or not lengths:
        return lengths
    return [max(lengths)] * len(lengths)


def evaluate_openmoji(model, processor, script_args: SFTScriptArguments) -> tuple[dict, list]:
    """Held-out group accuracy and text-to-image quality on the embedded default: `(metrics, drawn images)`."""
    from ..data.openmoji import load_openmoji
    from ..data.openmoji_conversations import TEXT_TO_IMAGE_PROMPT, openmoji_conversations
    from ..evaluation.stage2 import answer_questions, draw, exact_match_accuracy, text_to_image_quality

    size = processor.visual_tokenizer.config.image_size
    test = load_openmoji(split="test", size=size)
    held_out = test.shuffle(seed=0).select(range(min(script_args.eval_limit, len(test))))
    questions = openmoji_conversations("group", images=held_out)
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    answers = answer_questions(model, processor, questions, max_new_tokens=8)
    group = exact_match_accuracy(answers, held_out["group"])
    group["examples"] = [[q, a] for q, a in zip(held_out["group"][:5], answers[:5], strict=True)]
    train = load_openmoji(split="train", size=size, limit=script_args.train_limit)
    picked = train.shuffle(seed=1).select(range(min(script_args.eval_draw_limit, len(train))))
    drawn = draw(model, processor, [TEXT_TO_IMAGE_PROMPT.format(name=n) for n in picked["name"]], seed=0)
    quality = text_to_image_quality(drawn, list(picked["image"]), list(train["image"]))
    # What PSNR means here: a blank canvas and the average of all renders, scored against the same targets.
    blank = [Image.new("RGB", drawn[0].size, "white")] * len(drawn)
    average = Image.fromarray(
        np.mean([np.asarray(i, dtype=np.float64) for i in train["image"]], axis=0).astype(np.uint8)
    )
    quality["reference_psnr"] = {
        "white_image": text_to_image_quality(blank, list(picked["image"]), blank[:1])["psnr"],
        "mean_image": text_to_image_quality([average] * len(drawn), list(picked["image"]), [average])["psnr"],
    }
    model.train(was_training)
    return {"held_out_group": group, "text_to_image": quality, "seconds": time.perf_counter() - start}, drawn


def run_sft(
    script_args: SFTScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    resume_from_checkpoint: str | None = None,
    model=None,
    processor=None,
    callbacks: list | None = None,
    trainer_out: dict | None = None,
) -> dict:
    """Stage II end to end: model, mixture, SFTTrainer (full or LoRA), save, and the before/after evaluation.

    `model`/`processor` skip loading `model_args.model_name_or_path`; `callbacks` go to the trainer (e.g. a
    [`CodebookSyncCallback`] when the tokenizer's codebook should follow the tuned LLM table). Returns the
    metrics it also writes to `OUTPUT_DIR/sft_results.json`.
    """
    started = time.perf_counter()
    seed_everything(training_args)  # before anything random is built (the Trainer seeds only in its __init__)
    if model is None:
        model, processor = load_model_and_processor(model_args, script_args)
    cache_dir = script_args.dataset_cache_dir or os.path.join(training_args.output_dir, "dataset_cache")
    image_head = getattr(model.config, "image_head", "flat")
    report: dict = {}
    with training_args.main_process_first(desc="Stage II data"):
        train_dataset = build_sft_dataset(script_args, processor, cache_dir, report, image_head)
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        peft_config.target_modules = lora_target_modules(model, model_args.lora_target_modules)
        if image_head == "depth":  # LoRA adapts the LLM; the small depth head is new, so it is trained whole
            peft_config.modules_to_save = [*(peft_config.modules_to_save or []), "depth_head"]
    evaluate = script_args.dataset == "openmoji" and script_args.eval_limit > 0
    results = {"data": {"samples": len(train_dataset), "records": report}}
    if evaluate and resume_from_checkpoint is None and training_args.process_index == 0:
        results["before"], _ = evaluate_openmoji(model, processor, script_args)
        logger.warning("Before Stage II: %s", json.dumps(results["before"]))
    training_args.remove_unused_columns = False  # the collator reads assistant_masks
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    trainer = UniCodeSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=processor,
        data_collator=UniCodeDataCollator.from_processor(
            processor, max_length=training_args.max_length, image_head=image_head
        ),
        peft_config=peft_config,
        callbacks=callbacks,
        depth_head_learning_rate=script_args.depth_head_learning_rate,
    )
    if trainer_out is not None:
        trainer_out["trainer"] = trainer
    train_started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    results["train"] = {**train_output.metrics, "seconds": time.perf_counter() - train_started}
    final = trainer.model
    if peft_config is not None:
        trainer.save_model(os.path.join(training_args.output_dir, "adapter"))
        if script_args.merge_lora:
            final = final.merge_and_unload()
    if training_args.process_index == 0:
        final.save_pretrained(training_args.output_dir)
        if hasattr(final, "model_card"):
            # TRL writes its generic card on every checkpoint save, so the folder already has a README.md
            # that save_pretrained keeps; the UniCode card (install line, remote-code usage) replaces it.
            final.model_card().save(os.path.join(training_args.output_dir, "README.md"))
        processor.save_pretrained(training_args.output_dir)
        if evaluate:
            results["after"], drawn = evaluate_openmoji(final, processor, script_args)
            logger.warning("After Stage II: %s", json.dumps(results["after"]))
            for index, image in enumerate(drawn):
                image.save(os.path.join(training_args.output_dir, f"drawn-{index}.png"))
        results["seconds"] = time.perf_counter() - started
        results["arguments"] = asdict(script_args)
        atomic_write_json(os.path.join(training_args.output_dir, "sft_results.json"), results)
    return results


__all__ = [
    "SFTScriptArguments",
    "UniCodeSFTTrainer",
    "build_sft_dataset",
    "evaluate_openmoji",
    "load_model_and_processor",
    "lora_target_modules",
    "parse_mixture",
    "run_sft",
]
