"""By-hand diagnosis of a trained visual tokenizer: how much PSNR does the quantizer itself cost?

Held-out PSNR can be limited by the codes (too few, collapsed, far from the features) or by the
encoder/decoder (too little training or capacity). Decoding the encoder's features *without*
quantizing them separates the two: that is the ceiling the codes can at best reach. For RQ the script
also decodes the first d residual levels only, to show what each level adds.

    . .venv/bin/activate
    python benchmarks/quantization_gap.py runs/tokenizer                   # held-out OpenMoji, all 374
    python benchmarks/quantization_gap.py runs/tokenizer --split train --limit 374
"""

from __future__ import annotations

import argparse

import torch

from transformers_unicode import UniCodeVisualTokenizer
from transformers_unicode.evaluation.reconstruction import psnr
from transformers_unicode.training.stage1 import images_to_pixels, load_image_dataset


@torch.no_grad()
def decoded_psnr(tokenizer, pixels: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Mean PSNR of the decoder fed (a) unquantized features, (b) each RQ prefix, (c) all codes."""
    sums: dict[str, float] = {}
    depth = tokenizer.config.codes_per_position
    for start in range(0, pixels.shape[0], batch_size):
        batch = pixels[start : start + batch_size]
        encoded = tokenizer.encode(batch)
        inputs = {"features, not quantized": encoded.features}
        if tokenizer.config.quantizer == "rq":
            for level in range(1, depth):
                prefix = tokenizer.codebook.lookup(encoded.codes[..., :level]).sum(dim=-2)
                inputs[f"first {level} of {depth} RQ codes"] = prefix.permute(0, 3, 1, 2)
        inputs[f"all codes ({tokenizer.config.quantizer}, D={depth})"] = encoded.quantized
        for name, latent in inputs.items():
            reconstruction = tokenizer.decode_quantized(latent).clamp(-1, 1)
            sums[name] = sums.get(name, 0.0) + float(psnr(reconstruction, batch).sum())
    return {name: total / pixels.shape[0] for name, total in sums.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokenizer", help="a saved UniCodeVisualTokenizer folder")
    parser.add_argument("--dataset", default="openmoji")
    parser.add_argument("--split", default="test", help="test = the held-out emoji")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tokenizer = UniCodeVisualTokenizer.from_pretrained(args.tokenizer).eval()
    size = tokenizer.config.image_size
    dataset = load_image_dataset(args.dataset, args.split, size, limit=args.limit)
    pixels = images_to_pixels(dataset["image"], size)
    print(f"{args.tokenizer}: {args.dataset} {args.split}, {pixels.shape[0]} images at {size} x {size}")
    results = decoded_psnr(tokenizer, pixels)
    ceiling = results["features, not quantized"]
    for name, value in results.items():
        print(f"  {name:<32} PSNR {value:6.2f} dB   ({value - ceiling:+.2f} dB against the features)")


if __name__ == "__main__":
    main()
