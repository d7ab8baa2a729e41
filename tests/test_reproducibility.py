"""A seed reproduces a run: two runs are bit-identical, and a run killed with SIGKILL and resumed with `--resume`
ends bit-identical to one never interrupted (Stage I and Stage II; tiny configs, then the embedded default, slow).

The killed run is a `transformers-unicode` subprocess (SIGKILL: no handler runs, no final save). The other runs
go through the same CLI in this process, which saves the ~15 s import of a new process on a busy 2-core
machine; both use conftest's thread count (OMP_NUM_THREADS for the subprocess), since the guarantee is per
thread count. Two runs in one process are also the stricter check: nothing may depend on the random state a
run inherits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import THREADS, tiny_llm, tiny_text_tokenizer, tiny_tokenizer_config, tiny_unicode
from safetensors.torch import load_file

import transformers_unicode
from transformers_unicode import UniCodeVisualTokenizer
from transformers_unicode.cli import main

SRC = os.path.dirname(os.path.dirname(transformers_unicode.__file__))
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": str(THREADS),
    "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
}


def run(args):
    assert main([str(a) for a in args]) == 0


def kill_after(args, checkpoint, log, timeout=600):
    """Start `transformers-unicode ARGS` as a subprocess and SIGKILL it as soon as `checkpoint` (a folder) exists."""
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "transformers_unicode.cli", *map(str, args)],
            stdout=handle, stderr=subprocess.STDOUT, env=ENV,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while process.poll() is None and not checkpoint.is_dir() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, (
        f"the run ended (rc {process.returncode}) before it could be killed; give it more steps after "
        f"{checkpoint.name}.\n" + open(log).read()[-3000:]
    )
    assert not (checkpoint.parent / "model.safetensors").exists(), "killed before its final save"


def assert_same_tensors(folder_a, folder_b, name="model.safetensors"):
    a, b = load_file(folder_a / name), load_file(folder_b / name)
    assert a.keys() == b.keys()
    differ = [key for key in a if not torch.equal(a[key], b[key])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:5]}"


@pytest.fixture
def full_determinism_restored():
    """`--full_determinism` switches torch (and a few environment variables) process-wide; put them back."""
    environ = dict(os.environ)
    yield
    torch.use_deterministic_algorithms(False)
    os.environ.clear()
    os.environ.update(environ)


# ---- Stage I, tiny ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_llm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llm")
    tiny_llm().save_pretrained(folder)
    tiny_text_tokenizer().save_pretrained(folder)
    return folder


def tokenizer_flags(llm_folder, output_dir, *extra):
    return [
        "train-tokenizer", "--llm", llm_folder, "--dataset", "digits", "--image_size", "16", "--latent_size", "2",
        "--patch_size", "2", "--block_out_channels", "16,16,16", "--num_visual_codes", "32",
        "--dead_code_threshold", "0.5", "--sync_every", "3", "--train_limit", "48", "--eval_limit", "4",
        "--per_device_train_batch_size", "4", "--max_steps", "12", "--save_steps", "3", "--logging_steps", "2",
        "--seed", "0", "--disable_tqdm", "true", "--report_to", "none", "--output_dir", output_dir, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer_run(tiny_llm_folder, tmp_path_factory):
    """One uninterrupted tiny Stage I run, the reference of the tests below."""
    out = tmp_path_factory.mktemp("stage1") / "a"
    run(tokenizer_flags(tiny_llm_folder, out))
    return out


def test_two_stage1_runs_with_one_seed_are_bit_identical(tokenizer_run, tiny_llm_folder, tmp_path):
    torch.manual_seed(1234)  # a different inherited random state must not matter
    run(tokenizer_flags(tiny_llm_folder, tmp_path / "b"))
    assert_same_tensors(tokenizer_run, tmp_path / "b")
    assert_same_tensors(tokenizer_run / "checkpoint-12", tmp_path / "b" / "checkpoint-12")


def test_stage1_with_full_determinism_is_bit_identical(tiny_llm_folder, tmp_path, full_determinism_restored):
    for name in "ab":
        run(tokenizer_flags(tiny_llm_folder, tmp_path / name, "--full_determinism", "true"))
    assert_same_tensors(tmp_path / "a", tmp_path / "b")


def test_stage1_killed_with_sigkill_resumes_bit_identical(tokenizer_run, tiny_llm_folder, tmp_path):
    out = tmp_path / "b"
    kill_after(tokenizer_flags(tiny_llm_folder, out), out / "checkpoint-6", tmp_path / "b.log")
    run(tokenizer_flags(tiny_llm_folder, out, "--resume"))
    assert_same_tensors(tokenizer_run, out)


# ---- Stage II, tiny ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sft_models(tiny_llm_folder, tmp_path_factory):
    """A saved UniCode folder (full tuning) and a Stage I tokenizer folder (assembled with --llm, LoRA)."""
    root = tmp_path_factory.mktemp("sft_models")
    model, processor = tiny_unicode()
    model.save_pretrained(root / "unicode")
    processor.save_pretrained(root / "unicode")
    torch.manual_seed(0)
    UniCodeVisualTokenizer.from_llm(tiny_llm(), tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    return {"full": ["--model_name_or_path", root / "unicode"],
            "lora": ["--model_name_or_path", root / "tokenizer", "--llm", tiny_llm_folder, "--use_peft", "true",
                     "--lora_r", "4", "--lora_alpha", "8"]}  # fmt: skip


def sft_flags(model_flags, output_dir, *extra):
    return [
        "sft", *model_flags, "--train_limit", "16", "--num_samples", "48", "--eval_limit", "0",
        "--mixture", "caption=1,group=1,text_to_image=1,decompression=1", "--decompression_segments", "2",
        "--per_device_train_batch_size", "4", "--max_steps", "8", "--save_steps", "2", "--logging_steps", "1",
        "--learning_rate", "0.001", "--activation_checkpointing", "false", "--max_length", "null",
        "--seed", "0", "--report_to", "none", "--disable_tqdm", "true", "--output_dir", output_dir, *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("tuning", ["full", "lora"])
def test_sft_runs_are_bit_identical_and_resume_exactly_after_sigkill(tuning, sft_models, tmp_path):
    flags = sft_models[tuning]
    run(sft_flags(flags, tmp_path / "a"))
    torch.manual_seed(1234)
    run(sft_flags(flags, tmp_path / "b"))
    assert_same_tensors(tmp_path / "a", tmp_path / "b")
    out = tmp_path / "c"
    kill_after(sft_flags(flags, out), out / "checkpoint-4", tmp_path / "c.log")
    run(sft_flags(flags, out, "--resume"))
    assert_same_tensors(tmp_path / "a", out)


# ---- the embedded default (SmolLM2's table, OpenMoji), slow --------------------------------------------
@pytest.fixture(scope="module")
def embedded_tokenizer_run(tmp_path_factory):
    """An uninterrupted Stage I run of the real default, shortened; also the Stage I folder Stage II starts from."""
    out = tmp_path_factory.mktemp("embedded") / "tokenizer"
    run(embedded_tokenizer_flags(out))
    return out


def embedded_tokenizer_flags(output_dir, *extra):
    return ["train-tokenizer", "--train_limit", "64", "--eval_limit", "8", "--max_steps", "8", "--save_steps", "2",
            "--logging_steps", "2", "--seed", "0", "--disable_tqdm", "true", "--report_to", "none",
            "--output_dir", output_dir, *extra]  # fmt: skip


@pytest.mark.slow
def test_embedded_stage1_killed_with_sigkill_resumes_bit_identical(embedded_tokenizer_run, tmp_path):
    out = tmp_path / "tokenizer"
    kill_after(embedded_tokenizer_flags(out), out / "checkpoint-4", tmp_path / "log")
    run(embedded_tokenizer_flags(out, "--resume"))
    assert_same_tensors(embedded_tokenizer_run, out)


@pytest.mark.slow
def test_embedded_sft_killed_with_sigkill_resumes_bit_identical(embedded_tokenizer_run, tmp_path):
    def flags(output_dir, *extra):  # the quickstart's LoRA on SmolLM2, few short samples
        return ["sft", "--model_name_or_path", embedded_tokenizer_run, "--llm", "embedded", "--mixture", "group=1",
                "--num_samples", "4", "--train_limit", "4", "--eval_limit", "0", "--use_peft", "true",
                "--lora_r", "8", "--lora_alpha", "16", "--lora_target_modules", "q_proj", "v_proj",
                "--per_device_train_batch_size", "1", "--max_steps", "4", "--save_steps", "1", "--logging_steps", "1",
                "--learning_rate", "0.001", "--activation_checkpointing", "false", "--max_length", "null",
                "--seed", "0", "--report_to", "none", "--disable_tqdm", "true", "--output_dir", output_dir, *extra]  # fmt: skip

    run(flags(tmp_path / "a"))
    kill_after(flags(tmp_path / "b"), tmp_path / "b" / "checkpoint-2", tmp_path / "log")
    run(flags(tmp_path / "b", "--resume"))
    assert_same_tensors(tmp_path / "a", tmp_path / "b")
