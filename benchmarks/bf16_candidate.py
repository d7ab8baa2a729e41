"""By-hand check of the precondition for issue 2's stretch: is a bf16 product faster than the fp32 floor here?

The stretch asks for a reduced-precision candidate pass (bf16 scores for every code, then an exact fp32
re-rank of the few best) that is >= 1.5x faster than the fp32 floor. The candidate pass is itself the
full (N, V) product in bf16, so it can only pay off where the CPU multiplies bf16 faster than fp32
(avx512_bf16 or AMX). This script times exactly that product next to the fp32 floor, on the benchmark's
shapes and thread count, and prints which of those instruction sets the CPU reports. It never fails on
the numbers.

    . .venv/bin/activate
    python benchmarks/bf16_candidate.py            # both shapes of benchmarks/quantizer.py (a few minutes)
    python benchmarks/bf16_candidate.py --quick    # tiny shapes: checks the script runs
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _machine import cpu_flags, cpu_model, package_versions  # benchmarks/ is on sys.path when a script runs

FULL_SHAPES = [(49152, 576), (32000, 4096)]
QUICK_SHAPES = [(4096, 64), (2048, 256)]
STRETCH_SPEEDUP = 1.5
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN/MKL pick and cache their kernels on the first call
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=None, help="N (default 4096; 512 with --quick)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per product after a warm-up")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    num_queries = args.queries or (512 if args.quick else 4096)
    print(f"bf16 candidate-pass precondition, {args.threads} threads, N = {num_queries}")
    print(f"  {cpu_model()}; {cpu_flags(FLAGS)}; {package_versions('torch')}")
    generator = torch.Generator().manual_seed(0)
    for num_codes, dim in QUICK_SHAPES if args.quick else FULL_SHAPES:
        queries = torch.randn(num_queries, dim, generator=generator)
        codebook = torch.randn(num_codes, dim, generator=generator) * 0.14
        timings = {}
        for dtype in (torch.float32, torch.bfloat16):
            x, table = queries.to(dtype), codebook.to(dtype)
            out = torch.zeros(num_queries, num_codes, dtype=dtype)
            timings[dtype] = median_seconds(
                lambda x=x, table=table, out=out: torch.mm(x, table.T, out=out), args.repeats
            )
        speedup = timings[torch.float32] / timings[torch.bfloat16]
        verdict = "possible" if speedup >= STRETCH_SPEEDUP else "out of reach on this CPU"
        print(
            f"  V x c = {num_codes} x {dim}: fp32 floor {timings[torch.float32] * 1e3:.0f} ms, bf16 product "
            f"{timings[torch.bfloat16] * 1e3:.0f} ms -> bf16 is {speedup:.2f}x the fp32 speed "
            f"(stretch needs >= {STRETCH_SPEEDUP}x before any re-rank): {verdict}"
        )


if __name__ == "__main__":
    main()
