"""How the RQ levels' scales compare with the LLM's row norms (issue 15 §1, the paper's section 3.2).

Residual quantization makes each level quantize what the previous ones left, so level d's residual (and the
code row chosen for it) shrinks with d, while every row of the LLM table C_L has roughly the same norm. If
C is to equal C_L, a level-4 residual must be matched by a row of the norm level 1 needs. This prints, per
level, over held-out OpenMoji: the residual's norm, the norm of the chosen row in the visual codebook C, the
norm of the LLM row of the same id, and the cosine between those two rows.

    . .venv/bin/activate
    python benchmarks/level_scales.py runs/tokenizer            # any RQ Stage I folder; seconds on 2 cores
    python benchmarks/level_scales.py runs/tokenizer --probe    # + the probe below; ~2 minutes

`--probe` asks whether weighting the levels would make an image easier to read for the LLM, which reads the
unscaled sum of its own rows of the four codes: a logistic regression (standardised features, C = 0.05) from
SmolLM2's rows, weighted per level, mean-pooled over the image and over its 2 x 2 quarters, to the CLDR group,
fit on the 3,570 training emoji and scored on the 374 held-out ones, for several weightings.
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


WEIGHTINGS = {
    "unscaled sum (what the LLM reads)": [1.0, 1.0, 1.0, 1.0],
    "level 1 only": [1.0, 0.0, 0.0, 0.0],
    "levels 1-2": [1.0, 1.0, 0.0, 0.0],
    "the measured level scales": [1.9, 0.46, 0.24, 0.14],
}


@torch.no_grad()
def probe_weightings(tokenizer: UniCodeVisualTokenizer, processor) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from transformers_unicode import load_llm

    table = load_llm("embedded")[0].get_input_embeddings().weight.detach()

    def codes_of(split):
        emoji = load_openmoji(split, size=tokenizer.config.image_size)
        images = list(emoji["image"])
        codes = [
            tokenizer.encode(processor(images[i : i + 128], return_tensors="pt")["pixel_values"]).codes
            for i in range(0, len(images), 128)
        ]
        return torch.cat(codes), np.asarray(emoji["group"])

    def features(codes, weights):
        read = (table[codes] * torch.tensor(weights)[:, None]).sum(-2).permute(0, 3, 1, 2)  # (N, c, h, w)
        quarters = torch.nn.functional.avg_pool2d(read, read.shape[-1] // 2).flatten(1)
        return torch.cat([read.mean((2, 3)), quarters], 1).numpy()

    (train, train_groups), (test, test_groups) = codes_of("train"), codes_of("test")
    majority = max(float((test_groups == g).mean()) for g in set(test_groups))
    print(f"\nheld-out group probe (majority baseline {majority:.1%}):")
    for name, weights in WEIGHTINGS.items():
        x_train, x_test = features(train, weights), features(test, weights)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        probe = LogisticRegression(C=0.05, max_iter=500).fit((x_train - mean) / std, train_groups)
        predicted = probe.predict((x_test - mean) / std)
        balanced = np.mean([(predicted[test_groups == g] == g).mean() for g in set(test_groups)])
        print(f"  {name}: accuracy {(predicted == test_groups).mean():.1%}, balanced {balanced:.1%}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokenizer", help="a Stage I folder whose quantizer is RQ")
    parser.add_argument("--images", type=int, default=128, help="held-out emoji encoded")
    parser.add_argument("--probe", action="store_true", help="also probe per-level weightings (~2 min)")
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
    if args.probe:
        probe_weightings(tokenizer, processor)


if __name__ == "__main__":
    main()
