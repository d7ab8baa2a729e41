"""`transformers-unicode ablate`: the papers' ablation tables in miniature, from one command.

    transformers-unicode ablate --out runs/ablate                             # every table, ~5 min a row
    transformers-unicode ablate --out runs/ablate --only codebook --steps 1000
    transformers-unicode ablate --out runs/ablate --only rq_depth --minutes_per_row 3

Each row trains a Stage I tokenizer (UniCode Table 5's rows: a short Stage II) under the same budget as the
other rows of its table and is scored on held-out images. The budget is the same number of steps where a row's
schedule is defined over the steps (the codebook's pull, the cosine learning rate) and the same wall-clock
time where the paper compares at equal cost (Table 10: RQ depth). Every row says whether the direction matches
the paper's, whichever way the numbers fall.

`OUT/ablation.json` is written after every row (rows already in it are skipped, so a stopped run continues),
then `OUT/ablation.md` (the tables) and `OUT/ablation.png` (PSNR against `llm_cosine`, issue 15's
PSNR-against-unification curve, and the other tables' PSNR).
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field

import torch
from PIL import Image, ImageDraw
from transformers.utils import logging

from .callbacks import TimeBudgetCallback
from .io import atomic_write_json

logger = logging.get_logger(__name__)


@dataclass(frozen=True)
class Row:
    name: str
    settings: dict  # TokenizerTrainingArguments fields (Stage I rows) or the Stage II mixture (Table 5)


@dataclass(frozen=True)
class Table:
    paper: str
    measured: str
    budget: str  # "steps" or "time"
    rows: tuple[Row, ...]


TABLES = {
    "codebook": Table(
        "UniCode Table 4: iter / frozen / dual (and issue 15's schedules that end at C = C_L)",
        "held-out PSNR, codes in use, llm_cosine, and the LLM's perplexity with the rows Stage I leaves it",
        "steps",
        (
            Row("iter (Eq. 3, constant gamma)", {}),
            Row("iter, gamma annealed to 0", {"sync_schedule": "linear"}),
            Row(
                "iter, annealed, C = C_L from 80 %", {"sync_schedule": "linear", "sync_freeze_fraction": 0.8}
            ),
            Row("frozen (C = C_L)", {"codebook_mode": "frozen"}),
            Row("dual (C and C_L swapped)", {"codebook_mode": "dual"}),
            # Issue 15's stacked-scale device: a fitted scale per RQ level on rows held at C_L.
            Row("level scales, frozen (C = C_L)", {"codebook_mode": "frozen", "level_scales": True}),
            Row(
                "level scales, annealed, C = C_L from 80 %",
                {"sync_schedule": "linear", "sync_freeze_fraction": 0.8, "level_scales": True},
            ),
            # Issue 15: with C = C_L the rows cannot move to the features, so let more fixed rows share the work:
            # twice the RQ levels (each position still one LLM input vector; a drawing writes 8 codes a position).
            Row(
                "8 levels, level scales, frozen (C = C_L)",
                {"codebook_mode": "frozen", "level_scales": True, "codes_per_position": 8},
            ),
            # Issue 15's third lever: dead codes restart from their own LLM rows, not from encoder outputs.
            Row("LLM-row restarts, iter (Eq. 3)", {"dead_code_restart": "llm"}),
            Row(
                "LLM-row restarts, annealed, C = C_L from 80 %",
                {"sync_schedule": "linear", "sync_freeze_fraction": 0.8, "dead_code_restart": "llm"},
            ),
            # Issue 15, on the encoder's side: a frozen codebook used 9-13 % of its ids, so a loss spreads the
            # encoder's outputs over the rows (the code-usage entropy loss) while C stays C_L.
            Row(
                "code entropy 0.1, frozen (C = C_L)", {"codebook_mode": "frozen", "code_entropy_weight": 0.1}
            ),
            Row(
                "code entropy 1.0, frozen (C = C_L)", {"codebook_mode": "frozen", "code_entropy_weight": 1.0}
            ),
            Row(
                "code entropy 0.1, level scales, frozen (C = C_L)",
                {"codebook_mode": "frozen", "level_scales": True, "code_entropy_weight": 0.1},
            ),
        ),
    ),
    "rq_depth": Table(
        "UniCode Table 10: RQ at 1, 2 and 4 levels, and HQ",
        "held-out PSNR at equal Stage I time, and LLM positions per image (read; written)",
        "time",
        (
            Row("RQ, 1 level", {"quantizer": "rq", "codes_per_position": 1}),
            Row("RQ, 2 levels", {"quantizer": "rq", "codes_per_position": 2}),
            Row("RQ, 4 levels", {"quantizer": "rq", "codes_per_position": 4}),
            Row("HQ (top map at half the side, 4 bottom codes each)", {"quantizer": "hq"}),
        ),
    ),
    "mcq_vs_rq": Table(
        "UniTok Table 7: MCQ against RQ at equal code shape",
        "held-out PSNR and codes in use",
        "steps",
        (
            Row("RQ, 4 codes a position", {"quantizer": "rq", "codes_per_position": 4}),
            Row("MCQ, 4 sub-codebooks", {"quantizer": "mcq", "codes_per_position": 4}),
        ),
    ),
    "mcq_size": Table(
        "UniTok Table 8: MCQ with 2, 4 and 8 sub-codebooks",
        "held-out PSNR",
        "steps",
        (
            Row("MCQ, 2 sub-codebooks", {"quantizer": "mcq", "codes_per_position": 2}),
            Row("MCQ, 4 sub-codebooks", {"quantizer": "mcq", "codes_per_position": 4}),
            Row("MCQ, 8 sub-codebooks", {"quantizer": "mcq", "codes_per_position": 8}),
        ),
    ),
    "decompression": Table(
        "UniCode Table 5: the in-context decompression task on / off in Stage II",
        "held-out code-token loss on drawings (text-to-image of held-out emoji)",
        "steps",
        (
            Row("decompression off", {"mixture": "text_to_image=2,group_to_image=1"}),
            Row("decompression on", {"mixture": "text_to_image=2,group_to_image=1,decompression=0.5"}),
        ),
    ),
}


@dataclass
class AblationArguments:
    """Every field is a flag (`transformers-unicode ablate --help`)."""

    out: str = field(default="runs/ablate", metadata={"help": "Folder for the rows, ablation.json/.md/.png."})
    only: str | None = field(
        default=None,
        metadata={"help": f"Comma-separated tables to run, of: {', '.join(TABLES)} (default all)."},
    )
    rows: str | None = field(
        default=None,
        metadata={
            "help": "Semicolon-separated row names (or their beginnings) to run, within --only (default all); "
            "not commas, which the row names contain."
        },
    )
    steps: int = field(default=1000, metadata={"help": "Stage I steps of a row in the equal-steps tables."})
    minutes_per_row: float = field(
        default=5.0,
        metadata={"help": "A row's wall-clock time in the equal-time tables, and every row's cap."},
    )
    step_cap: int | None = field(
        default=None,
        metadata={"help": "At most this many steps in any row, the equal-time ones too (for quick checks)."},
    )
    llm: str = field(default="embedded", metadata={"help": "The causal LM whose table is the codebook."})
    dataset: str = field(
        default="openmoji", metadata={"help": "Stage I images: openmoji, digits or a folder."}
    )
    image_size: int = field(default=64, metadata={"help": "Side of the images."})
    latent_size: int = field(default=8, metadata={"help": "Side of the code map."})
    patch_size: int = field(default=4, metadata={"help": "Pixels folded into channels before the encoder."})
    block_out_channels: str = field(default="64,128", metadata={"help": "Encoder block widths."})
    num_visual_codes: int = field(default=2048, metadata={"help": "LLM ids used as codes."})
    batch_size: int = field(default=8, metadata={"help": "Stage I images a step."})
    sync_every: int = field(default=50, metadata={"help": "Steps between the codebook's syncs (T of Eq. 3)."})
    train_limit: int | None = field(default=None, metadata={"help": "At most this many training images."})
    eval_limit: int | None = field(default=None, metadata={"help": "At most this many held-out images."})
    language_tokens: int = field(
        default=4096, metadata={"help": "Tokens of the fixed English text scored for the LLM's perplexity."}
    )
    sft_steps: int = field(default=40, metadata={"help": "Stage II steps of a Table 5 row."})
    sft_batch_size: int = field(default=4, metadata={"help": "Stage II samples a step (Table 5)."})
    sft_eval_limit: int = field(default=32, metadata={"help": "Held-out drawings scored (Table 5)."})
    seed: int = field(default=0, metadata={"help": "Seed of every row."})

    def tables(self) -> list[str]:
        names = list(TABLES) if not self.only else [n.strip() for n in self.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in TABLES]
        if unknown or not names:
            raise ValueError(
                f"--only {self.only!r}: unknown table(s) {unknown}; choose from {', '.join(TABLES)}."
            )
        return names

    def selects(self, row_name: str) -> bool:
        # Semicolons, because row names contain commas ("level scales, frozen (C = C_L)").
        prefixes = [p.strip() for p in (self.rows or "").split(";") if p.strip()]
        return not prefixes or any(row_name.startswith(prefix) for prefix in prefixes)

    def __post_init__(self):
        self.tables()
        if self.rows and not any(
            self.selects(row.name) for name in self.tables() for row in TABLES[name].rows
        ):
            names = [row.name for name in self.tables() for row in TABLES[name].rows]
            raise ValueError(f"--rows {self.rows!r} names none of the rows of --only: {names}.")
        for name in ("steps", "batch_size", "sft_steps", "sft_batch_size", "sft_eval_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.minutes_per_row <= 0:
            raise ValueError(f"--minutes_per_row must be positive, got {self.minutes_per_row}.")
        if self.language_tokens < 512 or self.language_tokens % 512:
            raise ValueError(
                f"--language_tokens must be a positive multiple of 512, got {self.language_tokens}."
            )


# ---- Stage I rows --------------------------------------------------------------------------------------
def _stage_one_row(
    args: AblationArguments, table: Table, row: Row, output_dir: str, llm, llm_tokenizer
) -> dict:
    from .stage1 import TokenizerTrainerArguments, TokenizerTrainingArguments, train_tokenizer

    settings = dict(row.settings)
    if settings.get("quantizer") == "hq":
        # HQ's bottom map is 2x finer than its code map: the same encoder (the same feature map) gives a top
        # map of half the side, so HQ is compared at the other rows' encoder and bottom resolution.
        settings.setdefault("latent_size", max(1, args.latent_size // 2))
    model_args = TokenizerTrainingArguments(
        llm=args.llm,
        dataset=args.dataset,
        image_size=args.image_size,
        latent_size=settings.pop("latent_size", args.latent_size),
        patch_size=args.patch_size,
        block_out_channels=args.block_out_channels,
        num_visual_codes=args.num_visual_codes,
        sync_every=args.sync_every,
        train_limit=args.train_limit,
        eval_limit=args.eval_limit,
        **settings,
    )
    equal_time = table.budget == "time"
    training_args = TokenizerTrainerArguments(
        output_dir=output_dir,
        # Equal time: a step count no row reaches, and a learning rate that does not depend on it.
        max_steps=(args.step_cap or 10**7) if equal_time else min(args.steps, args.step_cap or args.steps),
        lr_scheduler_type="constant_with_warmup" if equal_time else "cosine",
        warmup_steps=min(50, args.steps // 10),
        per_device_train_batch_size=args.batch_size,
        logging_steps=max(1, min(50, args.steps // 4)),
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
    )
    budget = TimeBudgetCallback(time.time() + 60 * args.minutes_per_row)
    trained: dict = {}
    metrics = train_tokenizer(
        model_args,
        training_args,
        llm=llm,
        llm_tokenizer=llm_tokenizer,
        callbacks=[budget],
        trainer_out=trained,
    )
    tokenizer = trained["trainer"].model
    config = tokenizer.config
    positions = config.latent_size**2
    result = {
        "psnr": metrics["psnr"],
        "codes_in_use": metrics["codebook_usage"],
        "llm_cosine": metrics["llm_cosine"],
        "llm_relative_distance": metrics["llm_relative_distance"],
        "steps": metrics["steps"],
        "seconds": metrics["train_seconds"],
        "stopped_by_time": budget.stopped_at is not None and not equal_time,
        "llm_positions_read": positions,
        "llm_positions_written": positions * config.codes_per_position,
    }
    saved = os.path.join(output_dir, "model.safetensors")
    if os.path.exists(saved):  # a unified codebook is saved without its copies of C (issue 15)
        result["tokenizer_file_mb"] = os.path.getsize(saved) / 1e6
        result["codebook_storage"] = config.codebook_storage
    table_rows = tokenizer.codebook.llm_embedding
    result["llm_rows_changed"] = not torch.equal(table_rows, _llm_rows(llm, tokenizer.codebook.visual_ids))
    return result


def _llm_rows(llm, visual_ids: torch.Tensor) -> torch.Tensor:
    return llm.get_input_embeddings().weight.detach()[visual_ids].float()


def _perplexity_with_rows(llm, llm_tokenizer, visual_ids, rows, tokens: int) -> float:
    """The LLM's perplexity when its rows of the visual ids are `rows` (dual mode writes C into them)."""
    from ..evaluation.language import language_perplexity

    weight = llm.get_input_embeddings().weight
    kept = weight.detach()[visual_ids].clone()
    with torch.no_grad():
        weight[visual_ids] = rows.to(weight.dtype)
    try:
        return language_perplexity(llm, llm_tokenizer, max_tokens=tokens)["perplexity"]
    finally:
        with torch.no_grad():
            weight[visual_ids] = kept


# ---- Table 5: Stage II with and without decompression ---------------------------------------------------
def _stage_two_row(
    args: AblationArguments, row: Row, output_dir: str, tokenizer_dir: str, llm, llm_tokenizer
) -> dict:
    from trl import ModelConfig, SFTConfig

    from ..data.openmoji import load_openmoji
    from ..data.openmoji_conversations import openmoji_conversations
    from ..modeling.modeling_unicode import UniCodeForCausalLM
    from ..modeling.modeling_visual_tokenizer import UniCodeVisualTokenizer
    from .sft_data import tokenize_conversations
    from .stage2 import SFTScriptArguments, run_sft

    visual = UniCodeVisualTokenizer.from_pretrained(tokenizer_dir)
    # LoRA edits the modules it wraps: each row starts from its own copy of the untuned LLM.
    model, processor = UniCodeForCausalLM.from_llm(
        copy.deepcopy(llm), visual, tokenizer=llm_tokenizer, return_processor=True
    )
    script_args = SFTScriptArguments(
        llm=args.llm,
        mixture=row.settings["mixture"],
        num_samples=args.sft_steps * args.sft_batch_size,
        train_limit=args.train_limit,
        dataset_cache_dir=os.path.join(args.out, "dataset_cache"),
        eval_limit=0,
        merge_lora=False,
    )
    training_args = SFTConfig(
        output_dir=output_dir,
        max_steps=args.sft_steps,
        per_device_train_batch_size=args.sft_batch_size,
        learning_rate=1e-3,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, args.sft_steps // 10),
        train_sampling_strategy="group_by_length",
        activation_checkpointing=False,
        max_length=None,
        save_strategy="no",
        logging_steps=max(1, args.sft_steps // 4),
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
    )
    model_args = ModelConfig(
        model_name_or_path=tokenizer_dir,
        use_peft=True,
        lora_r=16,
        lora_alpha=32,
        lora_target_modules=["all-linear"],
    )
    trained: dict = {}
    budget = TimeBudgetCallback(time.time() + 60 * args.minutes_per_row)
    results = run_sft(
        script_args,
        training_args,
        model_args,
        model=model,
        processor=processor,
        callbacks=[budget],
        trainer_out=trained,
    )
    held_out = load_openmoji("test", size=visual.config.image_size)
    held_out = held_out.shuffle(seed=0).select(range(min(args.sft_eval_limit, len(held_out))))
    samples = tokenize_conversations(
        openmoji_conversations("text_to_image", images=held_out), processor, "text_to_image"
    )
    return {
        "held_out_code_loss": _code_token_loss(trained["trainer"].model, processor, samples),
        "steps": trained["trainer"].state.global_step,
        "seconds": results["train"]["seconds"],
        "stopped_by_time": budget.stopped_at is not None,
        "samples": results["data"]["samples"],
    }


@torch.no_grad()
def _code_token_loss(model, processor, samples, batch_size: int = 4) -> float:
    """Mean cross-entropy per written code token (answer-only labels, as in training)."""
    from .collator import UniCodeDataCollator

    collate = UniCodeDataCollator.from_processor(processor)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    records = [
        {"input_ids": ids, "assistant_masks": mask}
        for ids, mask in zip(samples["input_ids"], samples["assistant_masks"], strict=True)
    ]
    for begin in range(0, len(records), batch_size):
        batch = collate(records[begin : begin + batch_size])
        batch = {key: value.to(model.device) for key, value in batch.items()}
        targets = int((batch["labels"][:, 1:] != -100).sum())
        total += float(model(**batch).loss) * targets
        count += targets
    model.train(was_training)
    return total / max(count, 1)


# ---- the paper's direction, row by row -------------------------------------------------------------------
def verdicts(table_name: str, rows: list[dict]) -> list[str]:
    """For each row: what the paper found, and whether this run's numbers point the same way."""
    by_name = {r["row"]: r for r in rows}

    def says(ok: bool, text: str) -> str:
        return f"{'matches' if ok else 'does not match'}: {text}"

    out = []
    for r in rows:
        name = r["row"]
        if table_name == "codebook":
            iter_row = by_name.get("iter (Eq. 3, constant gamma)")
            if name.startswith("frozen") and iter_row:
                out.append(
                    says(
                        iter_row["psnr"] > r["psnr"], "the paper's iter draws better than frozen (PSNR here)"
                    )
                )
            elif name.startswith("dual"):
                ratio = r.get("perplexity_ratio")
                out.append(
                    says(
                        ratio is not None and ratio > 1.25,
                        "the paper's dual collapses the LLM (perplexity > 1.25x)",
                    )
                )
            elif name.startswith("iter (Eq. 3"):
                out.append("the paper's recipe: the reference row")
            else:
                out.append("not in the paper (issue 15)")
        elif table_name in ("rq_depth", "mcq_size"):
            ordered = [x for x in rows if not x["row"].startswith("HQ")]
            if name.startswith("HQ"):
                deepest = ordered[-1] if ordered else None
                close = deepest is not None and abs(deepest["psnr"] - r["psnr"]) <= 1.0
                out.append(says(close, "the paper finds RQ and HQ nearly on par (within 1 dB here)"))
            else:
                index = ordered.index(r)
                if index == 0:
                    out.append("the smallest: the reference row")
                else:
                    what = "more RQ levels" if table_name == "rq_depth" else "more sub-codebooks"
                    out.append(
                        says(r["psnr"] > ordered[index - 1]["psnr"], f"the paper: {what} reconstruct better")
                    )
        elif table_name == "mcq_vs_rq":
            rq = by_name.get("RQ, 4 codes a position")
            if name.startswith("MCQ") and rq:
                out.append(says(r["psnr"] > rq["psnr"], "UniTok: MCQ reconstructs better than RQ"))
            else:
                out.append("the reference row")
        else:  # decompression
            off = by_name.get("decompression off")
            if name == "decompression on" and off:
                better = r["held_out_code_loss"] < off["held_out_code_loss"]
                out.append(
                    says(better, "the paper: decompression improves generation (lower held-out code loss)")
                )
            else:
                out.append("the reference row")
    return out


# ---- the run ---------------------------------------------------------------------------------------------
def run_ablation(args: AblationArguments) -> dict:
    from ..evaluation.language import language_perplexity
    from ..modeling.llm_utils import load_llm

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "ablation.json")
    record = json.load(open(path)) if os.path.exists(path) else {"arguments": asdict(args), "tables": {}}
    llm, llm_tokenizer = load_llm(args.llm)
    untuned = None
    for table_name in args.tables():
        table = TABLES[table_name]
        done = record["tables"].setdefault(
            table_name, {"paper": table.paper, "budget": table.budget, "rows": []}
        )
        for index, row in enumerate(table.rows):
            if not args.selects(row.name):
                continue
            if any(r["row"] == row.name for r in done["rows"]):
                logger.warning("%s / %s: already in %s, skipped", table_name, row.name, path)
                continue
            output_dir = os.path.join(args.out, table_name, str(index))
            logger.warning("ablate %s / %s", table_name, row.name)
            if table_name == "decompression":
                tokenizer_dir = _reference_tokenizer(args, record, llm, llm_tokenizer)
                result = _stage_two_row(args, row, output_dir, tokenizer_dir, llm, llm_tokenizer)
            else:
                result = _stage_one_row(args, table, row, output_dir, llm, llm_tokenizer)
                if table_name == "codebook":
                    if untuned is None:
                        untuned = language_perplexity(llm, llm_tokenizer, max_tokens=args.language_tokens)[
                            "perplexity"
                        ]
                    result["perplexity"] = untuned
                    if result["llm_rows_changed"]:  # only dual writes into the LLM's rows
                        from ..modeling.modeling_visual_tokenizer import UniCodeVisualTokenizer

                        codebook = UniCodeVisualTokenizer.from_pretrained(output_dir).codebook
                        result["perplexity"] = _perplexity_with_rows(
                            llm,
                            llm_tokenizer,
                            codebook.visual_ids,
                            codebook.llm_embedding,
                            args.language_tokens,
                        )
                    result["perplexity_ratio"] = result["perplexity"] / untuned
            done["rows"].append({"row": row.name, **result})
            atomic_write_json(path, record)
    for table_name, done in record["tables"].items():
        for r, verdict in zip(done["rows"], verdicts(table_name, done["rows"]), strict=True):
            r["paper_direction"] = verdict
    atomic_write_json(path, record)
    write_tables(record, os.path.join(args.out, "ablation.md"))
    draw_ablation(record, os.path.join(args.out, "ablation.png"))
    return record


def _reference_tokenizer(args: AblationArguments, record: dict, llm, llm_tokenizer) -> str:
    """The Stage I tokenizer that Table 5's Stage II rows share: the codebook table's iter row, or one like it."""
    folder = os.path.join(args.out, "codebook", "0")
    if os.path.exists(os.path.join(folder, "config.json")):
        return folder
    folder = os.path.join(args.out, "decompression", "tokenizer")
    if not os.path.exists(os.path.join(folder, "config.json")):
        _stage_one_row(args, TABLES["codebook"], TABLES["codebook"].rows[0], folder, llm, llm_tokenizer)
    return folder


COLUMNS = {
    "codebook": ("psnr", "codes_in_use", "llm_cosine", "perplexity_ratio", "steps", "seconds"),
    "rq_depth": ("psnr", "codes_in_use", "llm_positions_read", "llm_positions_written", "steps", "seconds"),
    "mcq_vs_rq": ("psnr", "codes_in_use", "llm_cosine", "steps", "seconds"),
    "mcq_size": ("psnr", "codes_in_use", "steps", "seconds"),
    "decompression": ("held_out_code_loss", "samples", "steps", "seconds"),
}


def _in_paper_order(record: dict) -> list[tuple[str, dict]]:
    """The measured tables in `TABLES` order (the JSON file keeps its keys sorted)."""
    return [(name, record["tables"][name]) for name in TABLES if name in record["tables"]]


FORMATS = {"psnr": "{:.2f} dB", "codes_in_use": "{:.1%}", "seconds": "{:.0f}", "perplexity_ratio": "{:.3f}x"}


def _cell(column: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return FORMATS.get(column, "{:.3f}").format(value)
    return str(value)


def write_tables(record: dict, path: str) -> None:
    lines = []
    for table_name, done in _in_paper_order(record):
        columns = COLUMNS[table_name]
        budget = "equal steps" if done["budget"] == "steps" else "equal wall-clock time"
        lines += [f"### {done['paper']} ({budget})", ""]
        lines.append("| row | " + " | ".join(columns) + " | the paper's direction |")
        lines.append("|---|" + "---|" * (len(columns) + 1))
        for r in done["rows"]:
            cells = [_cell(c, r.get(c)) for c in columns]
            note = r.get("paper_direction", "")
            if r.get("stopped_by_time"):
                note += " (stopped by the time cap)"
            lines.append(f"| {r['row']} | " + " | ".join(cells) + f" | {note} |")
        lines.append("")
    with open(path, "w") as file:
        file.write("\n".join(lines))


def draw_ablation(record: dict, path: str, side: int = 360) -> None:
    """Left: PSNR against llm_cosine for the codebook rows (issue 15's curve); right: PSNR of every Stage I row."""
    rows = [(t, r) for t, done in _in_paper_order(record) for r in done["rows"] if "psnr" in r]
    image = Image.new("RGB", (2 * side, side + 20 * max(1, len(rows))), "white")
    pen = ImageDraw.Draw(image)
    margin = 40
    if rows:
        low = min(r["psnr"] for _, r in rows) - 0.5
        high = max(r["psnr"] for _, r in rows) + 0.5
    else:
        low, high = 0.0, 1.0

    def y(psnr):
        return side - margin - (side - 2 * margin) * (psnr - low) / max(high - low, 1e-6)

    pen.rectangle((margin, margin, side - margin, side - margin), outline="black")
    pen.text((margin, 8), "codebook rows: PSNR (dB) against llm_cosine (0 .. 1)", fill="black")
    pen.rectangle((side + margin, margin, 2 * side - margin, side - margin), outline="black")
    pen.text((side + margin, 8), f"every Stage I row: PSNR {low:.1f} .. {high:.1f} dB", fill="black")
    for index, (table_name, r) in enumerate(rows):
        if table_name == "codebook":
            x = margin + (side - 2 * margin) * max(0.0, min(1.0, r["llm_cosine"]))
            pen.ellipse((x - 4, y(r["psnr"]) - 4, x + 4, y(r["psnr"]) + 4), fill="#d62728")
            pen.text((x + 6, y(r["psnr"]) - 6), str(index + 1), fill="black")
        width = (side - 2 * margin) / max(1, len(rows))
        left = side + margin + index * width
        pen.rectangle((left + 2, y(r["psnr"]), left + width - 2, side - margin), fill="#1f77b4")
        pen.text((left + 2, side - margin + 4), str(index + 1), fill="black")
        pen.text(
            (margin, side + 4 + 20 * index),
            f"{index + 1}: {table_name} / {r['row']}: {r['psnr']:.2f} dB",
            fill="black",
        )
    image.save(path)


__all__ = ["AblationArguments", "TABLES", "run_ablation", "verdicts"]
