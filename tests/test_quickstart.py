"""The quickstart: a time budget that stops training cleanly (fast), and a miniature run of the whole main
job on the embedded default, interrupted and resumed (slow)."""

import json
import os
import warnings

import pytest
from conftest import tiny_sft
from PIL import Image

from transformers_unicode.training.callbacks import TimeBudgetCallback


class FakeClock:
    """A clock the test moves by hand (each read advances it by `tick` seconds): the budget logic is tested
    without depending on how fast or busy the machine is."""

    def __init__(self, tick=0.0):
        self.now, self.tick = 1_000_000.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


MINIATURE_PLAN = dict(tokenizer_steps=4, tokenizer_batch_size=8, sft_steps=2, sft_batch_size=2, sft_samples=4)


def test_time_budget_stops_training_with_a_checkpoint(tmp_path):
    clock = FakeClock()
    budget = TimeBudgetCallback(deadline=clock.now, clock=clock)  # already spent: stop after the first step
    _, trainer = tiny_sft(tmp_path, callbacks=[budget], max_steps=4, save_strategy="steps", save_steps=100)
    assert trainer.state.global_step == 1 and budget.stopped_at == 1
    assert os.path.isdir(tmp_path / "checkpoint-1")  # --resume continues from here


def _quickstart(tmp_path, monkeypatch, clock, **flags):
    import torch

    from transformers_unicode.training.quickstart import Quickstart, QuickstartArguments

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the 2-core CPU plan
    return Quickstart(QuickstartArguments(out=str(tmp_path / "qs"), **flags), clock=clock)


def test_slow_steps_do_not_stop_a_plan_far_below_its_budget(tmp_path, monkeypatch):
    """A miniature plan (seconds of work in a 29-minute budget) runs every step even when each step takes two
    minutes of the clock, as on a loaded machine: only an overrun of the whole budget stops a stage."""
    clock = FakeClock()
    run = _quickstart(tmp_path, monkeypatch, clock, **MINIATURE_PLAN)
    budget = TimeBudgetCallback(run._stage_deadline("tokenizer"), clock=clock)
    clock.tick = 120.0  # every step end reads the clock once: two minutes a step
    _, trainer = tiny_sft(tmp_path / "sft", callbacks=[budget], max_steps=4)
    assert trainer.state.global_step == 4 and budget.stopped_at is None


def test_stage_one_leaves_exactly_the_rest_of_the_plan_when_it_overruns(tmp_path, monkeypatch):
    clock = FakeClock()
    run = _quickstart(tmp_path, monkeypatch, clock, **MINIATURE_PLAN)
    planned = run._stage_seconds()
    stage_one_end = run._stage_deadline("tokenizer")
    assert stage_one_end == pytest.approx(run._stage_deadline("sft") - planned["sft"])
    assert stage_one_end - clock.now > 20 * planned["tokenizer"]  # a slow Stage I has room to finish


@pytest.mark.parametrize("budget_minutes", [None, 12.0])
def test_budget_gives_each_training_stage_its_plan_or_the_same_fraction_of_it(
    tmp_path, monkeypatch, budget_minutes
):
    """The defaults fit their budget, so neither stage is cut; a smaller budget shortens both alike."""
    clock = FakeClock()
    budget = {} if budget_minutes is None else {"budget_minutes": budget_minutes}
    run = _quickstart(tmp_path, monkeypatch, clock, **budget)
    planned = run._stage_seconds()
    stage_one_end = run._stage_deadline("tokenizer")
    stage_two_end = run._stage_deadline("sft")  # Stage II starts when Stage I stops at the latest
    fractions = (
        (stage_one_end - clock.now) / planned["tokenizer"],
        (stage_two_end - stage_one_end) / planned["sft"],
    )
    if budget_minutes is None:
        assert min(fractions) >= 1.0, "the default plan must fit the default budget"
    else:
        assert fractions[0] == pytest.approx(fractions[1], rel=0.01)
        assert max(fractions) < 1.0


def test_a_cheaper_stage_two_estimate_leaves_stage_one_its_plan(tmp_path, monkeypatch):
    """A long Stage II of cheap steps (the longer recipe's group questions) must not make the plan cut Stage I:
    at the default 17.5 s a step, 600 steps do not fit 90 minutes and both stages would shrink."""
    plan = dict(budget_minutes=90.0, tokenizer_steps=3600, sft_steps=600)
    default = _quickstart(tmp_path / "default", monkeypatch, FakeClock(), **plan)
    assert default._stage_deadline("tokenizer") - default.started < default._stage_seconds()["tokenizer"]
    clock = FakeClock()
    run = _quickstart(tmp_path / "cheap", monkeypatch, clock, sft_seconds_per_step=5.0, **plan)
    planned = run._stage_seconds()
    assert planned["sft"] == pytest.approx(600 * 5.0 + 60)
    assert run._stage_deadline("tokenizer") - clock.now >= planned["tokenizer"]
    with pytest.raises(ValueError, match="sft_seconds_per_step"):
        _quickstart(tmp_path / "bad", monkeypatch, FakeClock(), sft_seconds_per_step=0.0)


def test_the_depth_head_rate_reaches_stage_two_only_with_the_depth_head(tmp_path, monkeypatch):
    depth = _quickstart(tmp_path / "depth", monkeypatch, FakeClock(), sft_depth_head_learning_rate=1e-3)
    assert depth.sft_script_arguments().depth_head_learning_rate == 1e-3
    with pytest.raises(ValueError, match="no depth head"):
        _quickstart(
            tmp_path / "flat", monkeypatch, FakeClock(), image_head="flat", sft_depth_head_learning_rate=1e-3
        )


def test_stage_two_config_names_activation_checkpointing(tmp_path):
    """`gradient_checkpointing` is a deprecated alias (FutureWarning) of `activation_checkpointing`."""
    from transformers_unicode.training.quickstart import Quickstart, QuickstartArguments

    run = Quickstart(QuickstartArguments(out=str(tmp_path / "qs")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = run.sft_config(str(tmp_path / "qs" / "model"))
    assert config.activation_checkpointing is True  # the default since issue 17 §1 (memory)
    assert not [w for w in caught if "checkpointing" in str(w.message)], [str(w.message) for w in caught]


def test_stage_two_micro_batches_accumulate_to_the_same_step(tmp_path):
    """A micro-batch changes what a forward pass holds in memory, not the samples a step learns from."""
    from transformers_unicode.training.quickstart import Quickstart, QuickstartArguments

    arguments = QuickstartArguments(out=str(tmp_path / "qs"), sft_batch_size=8, sft_micro_batch_size=2)
    config = Quickstart(arguments).sft_config(str(tmp_path / "qs" / "model"))
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (2, 4)
    with pytest.raises(ValueError, match="--sft_micro_batch_size must divide --sft_batch_size"):
        QuickstartArguments(out=str(tmp_path / "other"), sft_batch_size=8, sft_micro_batch_size=3)


@pytest.mark.parametrize("tuning, rate, peft", [("lora", 3e-4, True), ("full", 5e-5, False)])
def test_stage_two_tuning_sets_the_adapter_and_its_default_rate(tmp_path, tuning, rate, peft):
    from transformers_unicode.training.quickstart import Quickstart, QuickstartArguments

    run = Quickstart(QuickstartArguments(out=str(tmp_path / tuning), sft_tuning=tuning))
    assert run.sft_config(str(tmp_path / tuning / "model")).learning_rate == rate
    assert run.sft_model_config().use_peft is peft
    chosen = QuickstartArguments(out=str(tmp_path / "chosen"), sft_tuning=tuning, sft_learning_rate=1e-5)
    assert chosen.sft_learning_rate == 1e-5  # a rate given on the command line is kept
    with pytest.raises(ValueError, match="--sft_tuning must be 'lora' or 'full'"):
        QuickstartArguments(out=str(tmp_path / "bad"), sft_tuning="qlora")
    balanced = Quickstart(QuickstartArguments(out=str(tmp_path / "balanced"), balance_groups=0.5))
    assert balanced.sft_script_arguments().balance_groups == 0.5
    assert run.sft_script_arguments().balance_groups == 0.0  # natural frequencies unless asked
    with pytest.raises(ValueError, match=r"--balance_groups must lie in \[0, 1\]"):
        QuickstartArguments(out=str(tmp_path / "bad"), balance_groups=1.5)  # before Stage I, not after it


def test_model_card_of_the_quickstart_carries_its_figures(tmp_path):
    from conftest import tiny_unicode

    from transformers_unicode.training.quickstart import Quickstart, QuickstartArguments

    model, _ = tiny_unicode()
    model.save_pretrained(tmp_path / "qs" / "model")
    assert "not measured" in (tmp_path / "qs" / "model" / "README.md").read_text()
    report = {  # a run that reached only some of what report.json holds
        "targets": {"held_out_psnr": {"target": 24.0, "reached": 23.5, "met": False}},
        "metrics": {"reconstruction": {"psnr": 23.5, "ssim": 0.9, "codebook_usage": 0.5, "count": 16}},
    }
    Quickstart(QuickstartArguments(out=str(tmp_path / "qs"), resume=True)).write_model_card(report)
    card = (tmp_path / "qs" / "model" / "README.md").read_text()
    assert "| 23.50 dB | >= 24 dB: **missed** |" in card and "stay under the PSNR target" in card
    assert "not measured. This folder" not in card and "trust_remote_code=True" in card


@pytest.mark.slow
def test_miniature_quickstart_end_to_end_interrupted_and_resumed(tmp_path, capsys, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoProcessor

    from transformers_unicode.cli import main
    from transformers_unicode.training.quickstart import Quickstart

    out = tmp_path / "quickstart"
    flags = [
        "quickstart", "--out", str(out), "--tokenizer_steps", "4", "--tokenizer_batch_size", "8",
        "--train_limit", "48", "--sft_steps", "2", "--sft_batch_size", "2", "--sft_samples", "4", "--lora_r", "4",
        "--lora_alpha", "8", "--reconstruction_limit", "16", "--question_limit", "4", "--caption_limit", "2",
        "--prompt_limit", "2", "--diversity_prompts", "1", "--diversity_seeds", "2", "--sheet_size", "4",
        "--batch_size", "4", "--language_tokens", "1024",
    ]  # fmt: skip
    finish_evaluation = Quickstart.run_evaluation

    def interrupted(self):
        raise KeyboardInterrupt  # the user stops the run after both training stages

    monkeypatch.setattr(Quickstart, "run_evaluation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(flags)
    state = json.loads((out / "quickstart_state.json").read_text())
    assert set(state["stages"]) == {"tokenizer", "sft"}
    assert not list((out / "model").glob("checkpoint-*"))  # the model folder is clean once its stage is done

    monkeypatch.setattr(Quickstart, "run_evaluation", finish_evaluation)
    capsys.readouterr()
    assert main(flags) == 2  # an existing run is never overwritten silently
    assert "--resume" in capsys.readouterr().err
    assert main([*flags, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "tokenizer: done in a previous run, skipped" in printed and "== Evaluation ==" in printed
    assert "Stage I: visual tokenizer ==" not in printed

    report = json.loads((out / "report.json").read_text())
    assert set(report["seconds"]) == {"tokenizer", "sft", "evaluation"}
    assert set(report["peak_memory_gb"]) == set(report["seconds"])
    assert all(0.1 < gb < 24 for gb in report["peak_memory_gb"].values())  # resident GB, each stage's own
    assert report["stages"]["tokenizer"]["steps"] == 4 and report["stages"]["sft"]["train"]["epoch"] > 0
    assert report["headline"]["codebook_llm_cosine"] == report["stages"]["tokenizer"]["llm_cosine"]
    reconstruction = report["metrics"]["reconstruction"]
    assert (
        reconstruction["count"] == 16
        and 0 < reconstruction["psnr"] < 60
        and 0 < reconstruction["codebook_usage"] <= 1
    )
    assert "rfid_skipped" in reconstruction  # no Inception weights on this machine: said, not faked
    group = report["metrics"]["understanding"]["group"]
    assert group["count"] == 4 and 0 <= group["exact_match"] <= 1 and 0 <= group["vqa_accuracy"] <= 1
    generation = report["metrics"]["generation"]
    assert generation["training_prompts"]["candidates"] == 3944
    assert 0 <= generation["training_prompts"]["top1"] <= generation["training_prompts"]["top5"] <= 1
    assert generation["diversity"]["samples_per_prompt"] == 2
    for name, target in report["targets"].items():
        at_least = target["direction"] == "at_least"
        assert target["met"] == (
            target["reached"] >= target["target"] if at_least else target["reached"] <= target["target"]
        ), name
    language = report["metrics"]["language"]
    assert language["tokens"] == 2 * 511 and language["untuned"]["tokens"] == language["tokens"]
    assert language["ratio"] == pytest.approx(language["perplexity"] / language["untuned"]["perplexity"])
    assert 0 <= group["ranking_accuracy"] <= 1
    for sheet in ("reconstructions.png", "generations.png", "captions.png"):
        assert Image.open(out / sheet).size[0] > 128

    card = (out / "model" / "README.md").read_text()  # the card carries this run's figures
    assert f"| {reconstruction['psnr']:.2f} dB |" in card and "trust_remote_code=True" in card
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    processor = AutoProcessor.from_pretrained(out / "model")
    assert type(model).__name__ == "UniCodeForCausalLM" and processor.visual_tokenizer is not None
    assert (out / "model" / "adapter" / "adapter_config.json").is_file()


def test_contact_sheet_keeps_long_captions_inside_their_cells():
    from transformers_unicode.evaluation.sheets import contact_sheet

    red, blue = Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")
    caption = "true: two-hump camel\nmodel: " + "user:" * 40  # one unbreakable 200-character word
    sheet = contact_sheet([([red, blue], caption)] * 5, columns=4, image_side=32, caption_lines=6)
    assert sheet.size == (
        4 * (2 * 32 + 4 + 8) + 8,
        2 * (32 + 6 * 16 + 8 + 8) + 8,
    )  # the grid, not the text, sets it
    assert sheet.getpixel((8 + 5, 8 + 5)) == (255, 0, 0) and sheet.getpixel((8 + 36 + 5, 8 + 5)) == (
        0,
        0,
        255,
    )
    # A long caption wraps inside its cell: the gutter between cells stays white.
    gutter = [sheet.getpixel((8 + 2 * 32 + 4 + 3, y)) for y in range(8 + 32, 8 + 32 + 6 * 16)]
    assert set(gutter) == {(255, 255, 255)}
    with pytest.raises(ValueError, match="at least one cell"):
        contact_sheet([])


def test_peak_memory_is_measured_per_window():
    """The per-stage memory figure: a reset starts a new window, and a large allocation raises its peak."""
    import mmap

    import numpy as np

    from transformers_unicode.training.memory import peak_memory_gb, reset_peak_memory

    if not reset_peak_memory():
        pytest.skip("this OS cannot reset the peak resident memory (/proc/self/clear_refs)")
    before = peak_memory_gb()
    # An anonymous mapping of its own, so the pages are new: a malloc'd block could reuse resident pages
    # that earlier tests freed, and then the peak would rightly not move (as a full suite run once showed).
    mapping = mmap.mmap(-1, 300_000_000)
    block = np.frombuffer(mapping, dtype=np.uint8)
    block[:] = 1  # touch every page
    during = peak_memory_gb()
    del block
    mapping.close()
    assert during - before > 0.25
    reset_peak_memory()
    assert peak_memory_gb() < during - 0.25  # the new window no longer holds the freed block


def test_release_memory_hands_freed_heap_back_to_the_os():
    """What a stage freed but glibc kept in its heap is no longer resident after `release_memory` (issue 17 §1)."""
    import ctypes
    import ctypes.util

    from transformers_unicode.training.memory import release_memory, resident_memory_gb

    if resident_memory_gb() is None or not ctypes.util.find_library("c"):
        pytest.skip("needs Linux's /proc and a C library to allocate from")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "malloc_trim"):
        pytest.skip("this C library keeps its heap (no malloc_trim)")
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(4800)]  # 300 MB of heap blocks, under the mmap threshold
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)  # resident
    for block in blocks[::2]:  # every other one: holes that the heap cannot give back by shrinking its top
        libc.free(block)
    kept = resident_memory_gb()
    assert release_memory()
    assert kept - resident_memory_gb() > 0.1  # 150 MB of holes
    for block in blocks[1::2]:
        libc.free(block)
