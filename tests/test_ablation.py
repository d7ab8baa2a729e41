"""`transformers-unicode ablate` end to end on a tiny configuration: every table, its shape and its verdicts."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_llm, tiny_text_tokenizer

from transformers_unicode.cli import main
from transformers_unicode.training.ablation import TABLES, AblationArguments, verdicts


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    llm_folder = tmp_path_factory.mktemp("llm")
    tiny_llm().save_pretrained(llm_folder)
    tiny_text_tokenizer().save_pretrained(llm_folder)
    out = tmp_path_factory.mktemp("ablate")
    flags = [
        "ablate", "--out", str(out), "--llm", str(llm_folder), "--image_size", "16", "--latent_size", "2",
        "--patch_size", "2", "--block_out_channels", "16,16,16", "--num_visual_codes", "32", "--train_limit", "32",
        "--eval_limit", "8", "--batch_size", "4", "--sync_every", "1", "--steps", "3", "--step_cap", "3", "--language_tokens", "512", "--sft_steps", "2",
        "--sft_batch_size", "2", "--sft_eval_limit", "4",
    ]  # fmt: skip
    assert main(flags) == 0
    return out


def test_every_table_has_its_rows_figures_and_a_verdict(ablation):
    record = json.loads((ablation / "ablation.json").read_text())
    assert set(record["tables"]) == set(TABLES)
    for name, table in TABLES.items():
        rows = record["tables"][name]["rows"]
        assert [r["row"] for r in rows] == [row.name for row in table.rows]
        for r in rows:
            assert r["paper_direction"]
            key = "held_out_code_loss" if name == "decompression" else "psnr"
            assert r[key] > 0
    codebook = {r["row"]: r for r in record["tables"]["codebook"]["rows"]}
    frozen = codebook["frozen (C = C_L)"]
    assert frozen["llm_cosine"] == pytest.approx(1.0, abs=1e-5)  # frozen: C is C_L
    assert frozen["perplexity_ratio"] == 1.0  # its LLM rows are untouched
    for name in (
        "level scales, frozen (C = C_L)",
        "level scales, annealed, C = C_L from 80 %",
        "code entropy 0.1, level scales, frozen (C = C_L)",  # the loss moves the encoder, not the codebook
        "8 levels, level scales, frozen (C = C_L)",
    ):
        assert codebook[name]["llm_cosine"] == pytest.approx(1.0, abs=1e-5)  # scaled per level, still C_L
    # A tokenizer that ends at C = C_L is saved without its copies of C; the iter row's is saved whole.
    iter_row = codebook["iter (Eq. 3, constant gamma)"]
    assert frozen["codebook_storage"] == "llm_rows" and iter_row["codebook_storage"] == "own"
    assert frozen["tokenizer_file_mb"] < iter_row["tokenizer_file_mb"]
    assert codebook["LLM-row restarts, annealed, C = C_L from 80 %"]["codebook_storage"] == "llm_rows"
    eight = codebook["8 levels, level scales, frozen (C = C_L)"]
    # 2 x 2 positions, each read as one vector and written as 8 codes.
    assert (eight["llm_positions_read"], eight["llm_positions_written"]) == (4, 32)
    assert codebook["dual (C and C_L swapped)"]["llm_rows_changed"]  # dual writes C into the LLM's rows
    depth = [r["llm_positions_written"] for r in record["tables"]["rq_depth"]["rows"]]
    assert depth == [4, 8, 16, 5]  # 2 x 2 positions with 1, 2, 4 RQ levels; HQ: a 1 x 1 top map, 5 codes


def test_markdown_and_png(ablation):
    text = (ablation / "ablation.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("### ")] == [
        line
        for table in TABLES.values()
        for line in text.splitlines()
        if line.startswith(f"### {table.paper}")
    ]  # one section a table, in the papers' order
    assert text.count("### ") == len(TABLES)
    for table in TABLES.values():
        for row in table.rows:
            assert f"| {row.name} |" in text
    assert (ablation / "ablation.png").stat().st_size > 0


def test_rows_already_measured_are_not_run_again(ablation):
    before = json.loads((ablation / "ablation.json").read_text())
    arguments = before["arguments"]
    flags = [
        "ablate",
        "--out",
        str(ablation),
        "--only",
        "mcq_vs_rq",
        "--llm",
        arguments["llm"],
        "--steps",
        "3",
    ]
    assert main(flags) == 0
    after = json.loads((ablation / "ablation.json").read_text())
    assert after["tables"]["mcq_vs_rq"] == before["tables"]["mcq_vs_rq"]  # the same seconds: not retrained


def test_verdicts_follow_the_numbers_either_way():
    rows = [{"row": "RQ, 4 codes a position", "psnr": 20.0}, {"row": "MCQ, 4 sub-codebooks", "psnr": 19.0}]
    assert verdicts("mcq_vs_rq", rows)[1].startswith("does not match")
    rows[1]["psnr"] = 21.0
    assert verdicts("mcq_vs_rq", rows)[1].startswith("matches")


def test_bad_flags_are_usage_errors(capsys):
    assert main(["ablate", "--only", "nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err
    with pytest.raises(ValueError, match="multiple of 512"):
        AblationArguments(language_tokens=100)
    assert main(["ablate", "--only", "mcq_size", "--rows", "RQ, 1"]) == 2  # a row of another table
    assert "names none of the rows" in capsys.readouterr().err


def test_rows_picks_rows_by_the_beginning_of_their_names():
    chosen = AblationArguments(only="codebook", rows="frozen;level scales")
    names = [row.name for row in TABLES["codebook"].rows if chosen.selects(row.name)]
    assert names == [
        "frozen (C = C_L)",
        "level scales, frozen (C = C_L)",
        "level scales, annealed, C = C_L from 80 %",
    ]
    # A whole name with a comma in it picks that row alone, not every row starting with "frozen".
    chosen = AblationArguments(only="codebook", rows="level scales, frozen (C = C_L)")
    assert [row.name for row in TABLES["codebook"].rows if chosen.selects(row.name)] == [
        "level scales, frozen (C = C_L)"
    ]
    assert all(AblationArguments().selects(row.name) for row in TABLES["codebook"].rows)
