"""Stage I end to end on tiny configs: resume exactness, atomic checkpoints, 2-process DDP, the CLI."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import StopAt, tiny_llm
from safetensors.torch import load_file

from transformers_unicode import UniCodeVisualTokenizer
from transformers_unicode.cli import main
from transformers_unicode.training.stage1 import (
    TokenizerTrainerArguments,
    TokenizerTrainingArguments,
    train_tokenizer,
)

HERE = os.path.dirname(__file__)


def tiny_args(**overrides):
    values = dict(
        dataset="digits",
        image_size=16,
        latent_size=2,
        patch_size=2,
        block_out_channels="16,16,16",
        num_visual_codes=64,
        dead_code_threshold=0.5,
        sync_every=2,
        train_limit=48,
        eval_limit=8,
    )
    values.update(overrides)
    return TokenizerTrainingArguments(**values)


def trainer_args(output_dir, **overrides):
    values = dict(
        output_dir=str(output_dir),
        max_steps=6,
        per_device_train_batch_size=4,
        save_steps=3,
        logging_steps=2,
        disable_tqdm=True,
        seed=0,
    )
    values.update(overrides)
    return TokenizerTrainerArguments(**values)


def test_training_writes_a_loadable_tokenizer_and_metrics(tmp_path):
    metrics = train_tokenizer(tiny_args(), trainer_args(tmp_path, save_strategy="no"), llm=tiny_llm())
    for key in ("psnr", "ssim", "codebook_usage", "distinct_codes", "train_seconds"):
        assert key in metrics
    assert 0 < metrics["codebook_usage"] <= 1 and metrics["psnr"] > 0
    tokenizer = UniCodeVisualTokenizer.from_pretrained(tmp_path)
    assert tokenizer.codebook.num_codes == 64
    assert (tmp_path / "eval_results.json").exists()
    # How unified the codebook ended (issue 15): in the metrics and in the saved config alike.
    assert -1 <= metrics["llm_cosine"] <= 1 and metrics["llm_relative_distance"] >= 0
    assert tokenizer.config.codebook_unification == {
        key: round(metrics[key], 6) for key in ("llm_cosine", "llm_relative_distance")
    }


@pytest.mark.parametrize("mode", ["iter", "frozen"])
def test_interrupted_run_resumes_to_the_same_codebook_and_weights(tmp_path, mode):
    """Frozen: C = C_L, so the checkpoint holds no copy of C (issue 15) and the resume rebuilds it exactly."""
    uninterrupted = {}
    train_tokenizer(
        tiny_args(codebook_mode=mode), trainer_args(tmp_path / "a"), llm=tiny_llm(), trainer_out=uninterrupted
    )
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(
            tiny_args(codebook_mode=mode), trainer_args(tmp_path / "b"), llm=tiny_llm(), callbacks=[StopAt(4)]
        )
    assert sorted(os.listdir(tmp_path / "b")) == ["checkpoint-3"], (
        "only complete checkpoints, no staging left"
    )
    stored = load_file(tmp_path / "b" / "checkpoint-3" / "model.safetensors")
    assert ("quantizer.codebook.embedding" in stored) == (mode == "iter")
    resumed = {}
    train_tokenizer(
        tiny_args(codebook_mode=mode),
        trainer_args(tmp_path / "b"),
        llm=tiny_llm(),
        resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-3"),
        trainer_out=resumed,
    )
    expected = uninterrupted["trainer"].model.state_dict()
    actual = resumed["trainer"].model.state_dict()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    losses = lambda t: [h["loss"] for h in t.state.log_history if "loss" in h]  # noqa: E731
    assert losses(uninterrupted["trainer"])[-1] == losses(resumed["trainer"])[-1]


def test_two_process_gloo_run_keeps_identical_codebooks(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        os.path.join(HERE, "scripts", "ddp_stage1.py"),
        str(tmp_path),
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([os.path.join(HERE, ".."), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0["world_size"] == 2
    assert torch.equal(rank0["codebook"], rank1["codebook"])
    assert torch.equal(rank0["cluster_size"], rank1["cluster_size"])
    fresh = UniCodeVisualTokenizer.from_llm(tiny_llm(), tiny_args().tokenizer_config())
    assert not torch.equal(rank0["codebook"], fresh.codebook.embedding), "training moved the codebook"


def test_a_unified_run_can_save_a_reference_to_the_llms_table(tmp_path):
    """Issue 15: `--refer_to_llm` with a codebook at C = C_L writes no codebook table; one off the table is whole."""
    tiny_llm().save_pretrained(tmp_path / "llm")
    frozen = tiny_args(llm=str(tmp_path / "llm"), codebook_mode="frozen", refer_to_llm=True)
    train_tokenizer(frozen, trainer_args(tmp_path / "frozen", save_strategy="no"))
    stored = load_file(tmp_path / "frozen" / "model.safetensors")
    assert "quantizer.codebook.llm_embedding" not in stored and "quantizer.codebook.embedding" not in stored
    loaded = UniCodeVisualTokenizer.from_pretrained(tmp_path / "frozen")  # reads C_L from --llm again
    table = tiny_llm().get_input_embeddings().weight
    assert torch.equal(loaded.codebook.embedding, table[loaded.codebook.visual_ids])

    moved = tiny_args(llm=str(tmp_path / "llm"), refer_to_llm=True)  # iter: the EMA moves C off the table
    train_tokenizer(moved, trainer_args(tmp_path / "iter", save_strategy="no"))
    assert "quantizer.codebook.embedding" in load_file(tmp_path / "iter" / "model.safetensors")


def test_cli_trains_from_flags_and_resumes(tmp_path, capsys):
    llm_dir = tmp_path / "llm"
    tiny_llm().save_pretrained(llm_dir)
    out = tmp_path / "run"
    flags = [
        "train-tokenizer",
        "--llm",
        str(llm_dir),
        "--dataset",
        "digits",
        "--image_size",
        "16",
        "--latent_size",
        "2",
        "--patch_size",
        "2",
        "--block_out_channels",
        "16,16,16",
        "--num_visual_codes",
        "32",
        "--train_limit",
        "16",
        "--eval_limit",
        "4",
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--save_steps",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--disable_tqdm",
        "true",
    ]
    assert main(flags) == 0
    assert '"psnr"' in capsys.readouterr().out
    assert (
        main(flags[:-6] + ["--max_steps", "3", "--save_steps", "1", "--resume", "--disable_tqdm", "true"])
        == 0
    )
    assert (out / "checkpoint-3").is_dir()


def test_cli_errors_are_messages_with_exit_codes(tmp_path, capsys):
    assert main(["train-tokenizer", "--output_dir", str(tmp_path / "none"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert (
        main(
            [
                "train-tokenizer",
                "--llm",
                "x",
                "--dataset",
                "nowhere",
                "--quantizer",
                "pq",
                "--output_dir",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "quantizer must be one of" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2
    assert main(["train-tokenizer", "--no_such_flag", "1"]) == 1
    assert "--no_such_flag" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, side",
    [
        ({"image_size": 64}, 8),
        ({"image_size": 32}, 4),  # the CLI help's `--image_size 32` example: no --latent_size needed
        ({"image_size": 64, "quantizer": "hq"}, 4),  # HQ's code map is half its bottom map
        ({"image_size": 16, "patch_size": 2, "block_out_channels": "8,8,8"}, 2),
        ({"image_size": 64, "latent_size": 4, "block_out_channels": "64,128,128"}, 4),  # given: kept
    ],
)
def test_the_code_map_side_follows_the_image_size_unless_given(flags, side):
    config = TokenizerTrainingArguments(**flags).tokenizer_config()
    assert config.latent_size == side
    assert (
        UniCodeVisualTokenizer(config)
        .encode(torch.zeros(1, 3, config.image_size, config.image_size))
        .codes.shape[1]
        == side
    )
