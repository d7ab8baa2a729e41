"""`transformers-unicode`: every subcommand's help, its argument errors (exit 2, a message naming the
problem) and the model commands on a tiny saved UniCode model."""

import json

import pytest
from conftest import (
    CONVERTIBLE_IMAGE_KINDS,
    UNUSABLE_IMAGE_KINDS,
    convertible_image_files,
    tiny_llm,
    tiny_unicode,
    unusable_image_files,
)
from PIL import Image

from transformers_unicode.cli import COMMANDS, main


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model, processor = tiny_unicode()
    model.save_pretrained(root / "unicode")
    processor.save_pretrained(root / "unicode")
    model.visual_tokenizer.save_pretrained(root / "tokenizer")
    tiny_llm().save_pretrained(root / "llama")
    Image.new("RGB", (20, 20), (255, 0, 0)).save(root / "red.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_every_command_has_help_with_examples(capsys):
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert set(COMMANDS) == {
        "quickstart",
        "train-tokenizer",
        "sft",
        "eval",
        "caption",
        "generate",
        "reconstruct",
        "space",
        "ablate",
    }
    assert "Exit codes" in listing
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "examples:" in capsys.readouterr().out, command


def test_no_command_and_unknown_command(capsys):
    assert main([]) == 2
    assert main(["painting"]) == 2
    assert "unknown command 'painting'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["caption", "{root}/missing.png", "--model", "{root}/unicode"], "No image file"),
        (["caption", "{root}/notes.txt", "--model", "{root}/unicode"], "not an image file"),
        (["caption", "{root}/red.png", "--model", "{root}/nowhere"], "No model folder"),
        (["caption", "{root}/red.png", "--model", "{root}/llama"], "not a UniCode model"),
        (
            ["caption", "{root}/red.png", "--model", "{root}/unicode", "--question", " "],
            "--question is empty",
        ),
        (["generate", "", "--out", "{root}/x.png", "--model", "{root}/unicode"], "prompt is empty"),
        (["generate", "a cat", "--out", "{root}/x.txt", "--model", "{root}/unicode"], "should end in .png"),
        (["generate", "a cat", "--out", "{root}/no/x.png", "--model", "{root}/unicode"], "does not exist"),
        (
            ["generate", "a cat", "--out", "{root}/x.png", "--model", "{root}/unicode", "--scale", "0"],
            "--scale",
        ),
        (
            ["reconstruct", "{root}/red.png", "--out", "{root}/y.png", "--model", "{root}/llama"],
            "not a UniCode model",
        ),
        (
            ["reconstruct", "{root}/missing.png", "--out", "{root}/y.png", "--model", "{root}/unicode"],
            "No image file",
        ),
        (["eval", "{root}/nowhere"], "No model folder"),
        (["eval", "{root}/unicode", "--question_limit", "many"], "invalid int value"),
        (["space", "{root}/nowhere"], "No model folder"),
        (["space", "{root}/unicode", "--port", "70000"], "not a TCP port"),
        (["quickstart", "--out", "{root}/qs", "--budget_minutes", "0"], "--budget_minutes must be positive"),
        (["quickstart", "--out", "{root}/qs", "--sft_steps", "0"], "--sft_steps must be at least 1"),
        (["quickstart", "--out", "{root}/qs", "--no_such_flag", "1"], "no_such_flag"),
    ],
)
def test_argument_errors_exit_2_with_a_message(folders, capsys, argv, message):
    argv = [a.format(root=folders) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own type errors
        code = exit_info.code
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["caption", "reconstruct"])
@pytest.mark.parametrize("kind", UNUSABLE_IMAGE_KINDS)
def test_unusable_image_files_are_one_line_and_exit_2(folders, tmp_path, capfd, command, kind):
    path, message = unusable_image_files(tmp_path / "inputs")[kind]
    out = tmp_path / "out.png"
    argv = [command, str(path), "--model", str(folders / "unicode")]
    code = main(argv + (["--out", str(out)] if command == "reconstruct" else []))
    err = capfd.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("kind", CONVERTIBLE_IMAGE_KINDS)
def test_images_that_need_converting_are_used_and_the_cli_says_how(folders, tmp_path, capfd, caplog, kind):
    path, note = convertible_image_files(tmp_path / "inputs")[kind]
    out = tmp_path / "out.png"
    code = main(["reconstruct", str(path), "--out", str(out), "--model", str(folders / "unicode")])
    err = capfd.readouterr().err
    assert code == 0 and out.exists(), err
    if kind == "animated GIF":
        # a logging warning: on stderr in a terminal (Python's last-resort handler), here in caplog
        assert "animated (2 frames); its first frame is used" in caplog.text
    elif note:
        assert f"note: {path} is a" in err and note in err
    else:
        assert "note:" not in err


def test_quickstart_refuses_to_overwrite_a_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "quickstart_state.json").write_text(json.dumps({"stages": {"tokenizer": {}}}))
    assert main(["quickstart", "--out", str(tmp_path / "run")]) == 2
    assert "Pass --resume" in capsys.readouterr().err


def test_caption_generate_reconstruct_on_a_saved_model(folders, capsys):
    assert (
        main(
            [
                "caption",
                str(folders / "red.png"),
                "--model",
                str(folders / "unicode"),
                "--max_new_tokens",
                "3",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.endswith("\n")

    out = folders / "drawn.png"
    assert (
        main(
            [
                "generate",
                "a red apple",
                "--out",
                str(out),
                "--model",
                str(folders / "unicode"),
                "--scale",
                "2",
            ]
        )
        == 0
    )
    assert Image.open(out).size == (32, 32)  # the tiny tokenizer draws 16 x 16

    for model in ("unicode", "tokenizer"):  # a UniCode folder or a bare Stage I tokenizer folder
        out = folders / f"round_trip_{model}.png"
        assert (
            main(
                ["reconstruct", str(folders / "red.png"), "--out", str(out), "--model", str(folders / model)]
            )
            == 0
        )
        assert Image.open(out).size == (64, 64)
        assert "LLM ids" in capsys.readouterr().out


def test_eval_writes_a_report_and_sheets_for_a_saved_model(folders, tmp_path, capsys):
    out = tmp_path / "eval"
    flags = ["--reconstruction_limit", "8", "--question_limit", "2", "--caption_limit", "2", "--prompt_limit", "2",
             "--diversity_prompts", "1", "--diversity_seeds", "2", "--sheet_size", "2", "--out", str(out)]  # fmt: skip
    assert main(["eval", str(folders / "unicode"), *flags]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["reconstruction"]["count"] == 8 and "rfid_skipped" in report["reconstruction"]
    assert {"group", "subgroup", "caption"} == set(report["understanding"])
    assert report["generation"]["training_prompts"]["count"] == 2
    judged = report["generation"]["class_conditional"]  # 2 drawings of each of the 9 groups, judged
    assert (
        judged["drawings"] == 18
        and len(judged["judged_as"]) == 18
        and set(judged["per_group"]) == set(report["generation"]["class_conditional"]["per_group"])
    )
    assert 0 <= judged["in_requested_group"] <= 1 and 0.6 < judged["judge_held_out_accuracy"] <= 1
    assert judged["judge_counts"] == (judged["judge_held_out_accuracy"] >= 0.75)
    assert set(report["headline"]) >= {
        "held_out_psnr",
        "held_out_group_accuracy",
        "generation_top5_training_prompts",
    }
    assert '"held_out_psnr"' in capsys.readouterr().out
    for sheet in ("reconstructions.png", "generations.png", "captions.png"):
        assert (out / sheet).is_file()
    assert report["generation"]["diversity"]["samples_per_prompt"] == 2


def test_eval_with_diversity_off_skips_that_figure_only(folders, tmp_path):
    out = tmp_path / "eval"
    flags = ["--reconstruction_limit", "2", "--question_limit", "1", "--caption_limit", "1", "--prompt_limit", "1",
             "--diversity_prompts", "0", "--class_conditional_per_group", "0", "--language_tokens", "0",
             "--sheet_size", "1", "--out", str(out)]  # fmt: skip
    assert main(["eval", str(folders / "unicode"), *flags]) == 0
    generation = json.loads((out / "report.json").read_text())["generation"]
    assert "diversity" not in generation and generation["training_prompts"]["count"] == 1
