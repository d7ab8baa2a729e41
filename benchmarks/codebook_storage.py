"""What a unified codebook saves on disk (issue 15): one Stage I tokenizer folder, saved three ways.

A tokenizer on the embedded default (SmolLM2's table; `train-tokenizer`'s default architecture) is built with
C = C_L, as a frozen run or one with `--sync_freeze_fraction` ends, and saved:

- `own`: C, C_L and the EMA sums (what a codebook that moved off the table needs);
- `llm_rows`: C_L and the EMA counts only (C = C_L; the default whenever it holds);
- `llm`: no table at all, a reference to the LLM's (`save_pretrained(..., refer_to_llm=True)`,
  `train-tokenizer --refer_to_llm`), which then needs the LLM to load.

It prints the size of `model.safetensors` for each, at the default K = 2,048 codes and at the whole vocabulary,
and the seconds `from_pretrained` takes for each folder (the reference loads SmolLM2 from its converted cache).

    . .venv/bin/activate
    python benchmarks/codebook_storage.py          # ~1 min, ~1 GB of temporary files
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from transformers_unicode import UniCodeVisualTokenizer, load_llm
from transformers_unicode.training.stage1 import TokenizerTrainingArguments


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", nargs="+", type=int, default=[2048, 49152], help="K values (clipped to V)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    load_llm(
        "embedded"
    )  # converts the GGUF once, so the reference's load below reads the cache like a user's
    llm, llm_tokenizer = load_llm("embedded")
    rows = [
        "| codes K | storage | model.safetensors | saved against `own` | from_pretrained |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for codes in args.codes:
            config = TokenizerTrainingArguments(num_visual_codes=codes).tokenizer_config()
            tokenizer = UniCodeVisualTokenizer.from_llm(llm, config, tokenizer=llm_tokenizer)
            tokenizer.config.llm_name_or_path = "embedded"
            sizes = {}
            for storage in ("own", "llm_rows", "llm"):
                path = os.path.join(folder, f"{codes}-{storage}")
                # `own` is what a codebook off the table writes: a tolerance nothing meets makes this one write it.
                tokenizer.config.unified_tolerance = -1.0 if storage == "own" else 1e-6
                tokenizer.save_pretrained(path, refer_to_llm=storage == "llm")
                sizes[storage] = os.path.getsize(os.path.join(path, "model.safetensors"))
                began = time.perf_counter()
                loaded = UniCodeVisualTokenizer.from_pretrained(path)
                seconds = time.perf_counter() - began
                assert torch.equal(loaded.codebook.embedding, tokenizer.codebook.embedding), storage
                rows.append(
                    f"| {tokenizer.codebook.num_codes:,} | `{storage}` | {sizes[storage] / 1e6:.1f} MB | "
                    f"{(sizes['own'] - sizes[storage]) / 1e6:.1f} MB | {seconds:.2f} s |"
                )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
