"""How the RQ levels' scales compare with the LLM's row norms (issue 15 §1, the paper's section 3.2).

Residual quantization makes each level quantize what the previous ones left, so level d's residual (and the
code row chosen for it) shrinks with d, while every row of the LLM table C_L has roughly the same norm. If
C is to equal C_L, a level-4 residual must be matched by a row of the norm level 1 needs. This prints, per
level, over held-out OpenMoji: the residual's norm, the norm of the chosen row in the visual codebook C, the
norm of the LLM row of the same id, and the cosine between those two rows.

    . .venv/bin/activate
    python benchmarks/level_scales.py runs/tokenizer            # any RQ Stage I folder; seconds on 2 cores
"""

from __future__ import annotations

import argparse

import torch

from transformers_unicode import UniCodeVisualTokenizer, load_openmoji
from transformers_unicode.processing import UniCodeImageProcessor


@torch.no_grad()
def level_scales(tokenizer: UniCodeVisualTokenizer, pixels: torch.Tensor) -> list[dict]:
    output = tokenizer.encode(pixels)
    features = output.features.permute(0, 2, 3, 1)  # (B, h, w, c): what the quantizer was given
    codebook = tokenizer.codebook
    rows = codebook.lookup(output.codes)  # (B, h, w, D, c), rows of C
    llm_rows = codebook.llm_embedding[codebook.rows_of(output.codes)]  # rows of C_L, same ids
    residual, levels = features, []
    for level in range(output.codes.shape[-1]):
        chosen, llm = rows[..., level, :], llm_rows[..., level, :]
        levels.append(
            {
                "level": level + 1,
                "residual_norm": float(residual.norm(dim=-1).mean()),
                "code_row_norm": float(chosen.norm(dim=-1).mean()),
                "llm_row_norm": float(llm.norm(dim=-1).mean()),
                "row_cosine": float(torch.nn.functional.cosine_similarity(chosen, llm, dim=-1).mean()),
            }
        )
        residual = residual - chosen
    return levels


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokenizer", help="a Stage I folder whose quantizer is RQ")
    parser.add_argument("--images", type=int, default=128, help="held-out emoji encoded")
    args = parser.parse_args(argv)
    tokenizer = UniCodeVisualTokenizer.from_pretrained(args.tokenizer).eval()
    if tokenizer.config.quantizer != "rq":
        raise SystemExit(f"{args.tokenizer} uses {tokenizer.config.quantizer!r}; this measures RQ levels.")
    size = tokenizer.config.image_size
    images = list(load_openmoji("test", size=size, limit=args.images)["image"])
    processor = UniCodeImageProcessor(size={"height": size, "width": size})
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    table = tokenizer.codebook.llm_embedding.norm(dim=-1)
    print(f"LLM rows of the {table.numel()} visual ids: norm {table.mean():.3f} (std {table.std():.3f})")
    print("| level | residual norm | chosen row norm (C) | LLM row norm (C_L, same id) | cosine C vs C_L |")
    print("|---|---|---|---|---|")
    for row in level_scales(tokenizer, pixels):
        print(
            f"| {row['level']} | {row['residual_norm']:.3f} | {row['code_row_norm']:.3f} | "
            f"{row['llm_row_norm']:.3f} | {row['row_cosine']:.3f} |"
        )


if __name__ == "__main__":
    main()
