"""By-hand benchmark of the nearest-code search (Eq. 1) against the floor and against peer quantizers.

This is a measurement script, not a test: it prints numbers and PASS/MISS lines and never fails on them.

Run (full size, several minutes on 2 cores; run it on an otherwise idle machine, or the timings mean
nothing):

    . .venv/bin/activate
    python benchmarks/quantizer.py                 # V x c = 49152 x 576 and 32000 x 4096, N = 4096 (~14 min)
    python benchmarks/quantizer.py --quick         # tiny shapes: checks that the script works
    python benchmarks/quantizer.py --repeats 7     # more timed rounds (default 5)

What it measures, for each codebook shape V x c with N Gaussian queries x (N, c) and a Gaussian codebook
E (V, c) whose entries have std 0.14 (like the rows of an LLM embedding table), fixed seed:

1. ours: `transformers_unicode.nearest_code_search(x, E, half_sq_norms)` with `0.5 * ||e_k||^2`
   computed once outside the timed region (as a quantizer does between codebook updates), and the same
   call without precomputed norms (the norms pass is then part of every call).
2. floor: the bare matrix product `torch.mm(x, E.T, out=prealloc)` into a preallocated (N, V) output,
   i.e. the GEMM that every method has to do; no argmin.
3. `x @ E.T`: the same product into a fresh (N, V) tensor; no argmin (scores only).
4. vector-quantize-pytorch `VectorQuantize(dim=c, codebook_size=V)`, eval mode, E copied into its
   codebook, input (1, N, c); its indices.
5. diffusers `VectorQuantizer` (models.autoencoders.vae; cdist + argmin), E copied into its embedding,
   input laid out as an image (1, c, h, w) with h * w = N; its indices.
6. transformers `ChameleonVQVAEVectorQuantizer` built from `ChameleonVQVAEConfig(embed_dim=c,
   num_embeddings=V)`, E copied into its embedding, same image layout; its indices.
7. `torch.cdist(x, E).argmin(1)`.

Every method runs in its own subprocess of this script (all from one invocation, so the figures are side
by side). The subprocess sets `torch.set_num_threads(threads)` (2 by default), builds x and E from the seed,
builds the method's state (modules, preallocated output, precomputed norms) and runs one untimed warm-up
call. All of a shape's subprocesses are started first; the timed calls then go round them in rounds, one
call at a time, each round starting one method further on (`--repeats` rounds). A machine whose speed
drifts over minutes (single calls of the floor here range from 7.7 to 11.6 s within ten minutes) then
weighs on every method alike, instead of on whichever method ran during a slow spell. The time reported
is the median of a method's timed calls, under `torch.no_grad()`.

Peak extra memory is the increase of the process's peak resident set size over its resident size just
before the timed calls, i.e. the most memory one call needs beyond its inputs and the method's
persistent state, in steady state (after the warm-up, so one-time library initialisation is not counted).
On Linux the peak is reset after the warm-up by writing 5 to /proc/self/clear_refs and read back as
VmHWM from /proc/self/status; where that is not possible the script falls back to the increase of
`resource.getrusage(RUSAGE_SELF).ru_maxrss` around the first call. The subprocesses run with glibc's
mmap threshold fixed at 1 MiB (MALLOC_MMAP_THRESHOLD_; by default it adapts upward to 32 MiB), so every
block of 1 MiB or more a call allocates is mapped fresh and returned on free: each call's temporaries show
up in its peak instead of hiding in heap memory kept from the previous call. Blocks above 32 MiB (every
(N, V) matrix at the full shapes, ours' 64 MiB tile) are mapped fresh under the default setting too, so
this does not change what the big allocations cost.

Codes: ours (with precomputed norms) is the reference. For every other method that returns indices the
table gives how many of the N codes differ from ours; for each differing query the two candidate codes are
compared in float64 and summarised below the table (exact ties are practically impossible with Gaussian
data; a difference can only come from float32 rounding in near-ties). Ours is also checked against a
float64 brute force on a sample of queries.

Targets (printed as PASS/MISS, not asserted): ours <= 1.10x the floor at every shape; ours faster than
every peer (methods 3-7) at every shape; ours' peak extra memory bounded by one score tile (64 MiB by
default) and flat in N (N = 4096 vs N = 16384 at 49152 x 576).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model, package_versions  # benchmarks/ is on sys.path when a script runs

FULL_SHAPES = [(49152, 576), (32000, 4096)]
FULL_QUERIES = 4096
QUICK_SHAPES = [(4096, 64), (2048, 256)]
QUICK_QUERIES = 512
# Flatness of ours' memory in N: same codebook, two query counts (>= the tile's 4096 rows in both modes).
FLAT_SHAPE_FULL = (49152, 576)
FLAT_SHAPE_QUICK = (4096, 64)
FLAT_QUERIES = (4096, 16384)

SEED = 0
CODE_STD = 0.14
FLOOR_TARGET = 1.10
# Slack allowed on top of one tile for ours' peak extra memory: the (N,) result, per-block running minima.
TILE_SLACK_MIB = 8.0
FLAT_TOLERANCE = 1.10
FLOAT64_SAMPLE_ROWS = 256

METHODS = [
    ("ours", "ours: nearest_code_search, norms precomputed"),
    ("ours_nonorms", "ours: nearest_code_search, norms per call"),
    ("floor", "floor: torch.mm(x, E.T, out=prealloc)"),
    ("matmul", "x @ E.T (scores only)"),
    ("vqpytorch", "vector-quantize-pytorch VectorQuantize"),
    ("diffusers", "diffusers VectorQuantizer (cdist)"),
    ("chameleon", "transformers ChameleonVQVAEVectorQuantizer"),
    ("cdist", "torch.cdist(x, E).argmin(1)"),
]
LABELS = dict(METHODS)
PEERS = ["matmul", "vqpytorch", "diffusers", "chameleon", "cdist"]
NO_CODES = {"floor", "matmul"}


# ------------------------------------------------------------------------------------------------
# Memory probes (worker side)
# ------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where that is not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1024


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# ------------------------------------------------------------------------------------------------
# Methods (worker side)
# ------------------------------------------------------------------------------------------------


def _image_layout(x):
    """(N, c) -> (1, c, h, w) contiguous, h * w = N, such that permute(0, 2, 3, 1).view(-1, c) gives x back."""
    n, c = x.shape
    h = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return x.view(1, h, n // h, c).permute(0, 3, 1, 2).contiguous()


def _build(method: str, x, codebook):
    """A zero-argument callable running one call of `method` (returns codes, or None), built outside timing."""
    import torch

    num_queries, dim = x.shape
    num_codes = codebook.shape[0]
    if method in ("ours", "ours_nonorms"):
        from transformers_unicode import nearest_code_search

        if method == "ours":
            half_sq_norms = 0.5 * codebook.pow(2).sum(dim=1)
            return lambda: nearest_code_search(x, codebook, half_sq_norms)
        return lambda: nearest_code_search(x, codebook)
    if method == "floor":
        out = torch.empty(num_queries, num_codes, dtype=x.dtype)
        out.zero_()  # touch the pages now: the output is preallocated, not part of the call's memory

        def floor():
            torch.mm(x, codebook.T, out=out)

        return floor
    if method == "matmul":

        def matmul():
            x @ codebook.T  # the (N, V) result is freed at once, inside the timed call

        return matmul
    if method == "vqpytorch":
        from vector_quantize_pytorch import VectorQuantize

        vq = VectorQuantize(dim=dim, codebook_size=num_codes).eval()
        vq._codebook.embed.copy_(codebook.view(1, num_codes, dim))
        x_seq = x.unsqueeze(0)  # (1, N, c), channel last
        return lambda: vq(x_seq)[1].reshape(-1)
    if method == "diffusers":
        from diffusers.models.autoencoders.vae import VectorQuantizer

        quantizer = VectorQuantizer(n_e=num_codes, vq_embed_dim=dim, beta=0.25).eval()
        quantizer.embedding.weight.copy_(codebook)
        x_image = _image_layout(x)
        return lambda: quantizer(x_image)[2][2].reshape(-1)
    if method == "chameleon":
        from transformers import ChameleonVQVAEConfig
        from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAEVectorQuantizer

        config = ChameleonVQVAEConfig(embed_dim=dim, num_embeddings=num_codes)
        quantizer = ChameleonVQVAEVectorQuantizer(config).eval()
        quantizer.embedding.weight.copy_(codebook)
        x_image = _image_layout(x)
        return lambda: quantizer(x_image)[2].reshape(-1)
    if method == "cdist":
        return lambda: torch.cdist(x, codebook).argmin(1)
    raise ValueError(f"unknown method {method!r}")


def _make_inputs(num_codes: int, dim: int, num_queries: int, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randn(num_codes, dim, generator=generator).mul_(CODE_STD)
    x = torch.randn(num_queries, dim, generator=generator)
    return x, codebook


def _sq_dist64(x, codebook, rows, codes):
    """Exact-enough squared distances ||x_rows - e_codes||^2 in float64."""
    diff = x[rows].double() - codebook[codes].double()
    return diff.pow(2).sum(dim=1)


def _float64_argmin(x_rows, codebook, chunk: int = 8192):
    """Brute-force nearest codes in float64 (expansion is exact enough in double), chunked over the codes."""
    import torch

    x64 = x_rows.double()
    best_value = torch.full((x64.shape[0],), math.inf, dtype=torch.float64)
    best_index = torch.zeros(x64.shape[0], dtype=torch.long)
    for start in range(0, codebook.shape[0], chunk):
        e64 = codebook[start : start + chunk].double()
        dist = (x64.pow(2).sum(1, keepdim=True) + e64.pow(2).sum(1)) - 2 * (x64 @ e64.T)
        value, index = dist.min(dim=1)
        better = value < best_value
        best_value = torch.where(better, value, best_value)
        best_index = torch.where(better, index + start, best_index)
    return best_index


def _compare_codes(codes, reference, x, codebook) -> dict:
    differ = (codes.reshape(-1) != reference).nonzero().flatten()
    result = {"disagree": int(differ.numel())}
    if differ.numel():
        ours = _sq_dist64(x, codebook, differ, reference[differ])
        theirs = _sq_dist64(x, codebook, differ, codes.reshape(-1)[differ])
        result["ours_closer"] = int((ours < theirs).sum())
        result["peer_closer"] = int((theirs < ours).sum())
        result["max_rel_gap"] = float(((theirs - ours).abs() / ours).max())
    return result


def _tile_mib(num_codes: int, num_queries: int) -> float:
    """Size of ours' score tile, from the module's own constants (mirrors nearest_code_search)."""
    from transformers_unicode.modeling import quantization_unicode as q

    elements = getattr(q, "DEFAULT_TILE_ELEMENTS", 1 << 24)
    max_rows = getattr(q, "DEFAULT_TILE_ROWS", 4096)
    rows = max(1, min(num_queries, max_rows))
    cols = max(1, min(num_codes, elements // rows))
    return rows * cols * 4 / 2**20


def serve(spec: dict) -> None:
    """Worker side: build, warm up, print READY; then one timed call per `call` line read from stdin, each
    answered `TIME ms`; on `finish`, print `RESULT {json}` (timings, peak memory, codes check) and return."""
    import torch

    torch.set_num_threads(spec["threads"])
    method = spec["method"]
    x, codebook = _make_inputs(spec["V"], spec["c"], spec["N"], spec["seed"])
    result: dict = {"method": method}
    if method.startswith("ours"):
        result["tile_mib"] = _tile_mib(spec["V"], spec["N"])
    with torch.no_grad():
        call = _build(method, x, codebook)
        can_reset = _reset_peak_rss()
        if not can_reset:  # fallback: ru_maxrss increase around the first call
            base_kib = _maxrss_kib()
            result["hidden_kib"] = max(0, base_kib - (_status_kib("VmRSS") or base_kib))
        start = time.perf_counter()
        codes = call()
        result["warmup_ms"] = 1e3 * (time.perf_counter() - start)
        if can_reset:
            _reset_peak_rss()
            base_kib = _status_kib("VmRSS")
        else:
            result["extra_kib"] = _maxrss_kib() - base_kib
        print("READY", flush=True)
        times = []
        for line in sys.stdin:
            if line.strip() != "call":
                break
            start = time.perf_counter()
            out = call()
            times.append(1e3 * (time.perf_counter() - start))
            del out
            print(f"TIME {times[-1]}", flush=True)
        if can_reset:
            result["extra_kib"] = max(_status_kib("VmHWM"), base_kib) - base_kib
        result["memory_mode"] = "steady-state (VmHWM reset)" if can_reset else "first call (ru_maxrss)"
        result["median_ms"] = statistics.median(times)
        result["times_ms"] = times

        if codes is not None:
            codes = codes.reshape(-1).long()
            if spec.get("save_codes"):
                torch.save(codes, spec["save_codes"])
                sample = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
                sample = sample[: min(FLOAT64_SAMPLE_ROWS, x.shape[0])]
                exact = _float64_argmin(x[sample], codebook)
                result["float64_sample"] = int(sample.numel())
                result["float64_disagree"] = int((exact != codes[sample]).sum())
            reference_path = spec.get("reference_codes")
            if reference_path and os.path.exists(reference_path):  # absent if ours failed
                reference = torch.load(reference_path)
                result.update(_compare_codes(codes, reference, x, codebook))
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------
# Driver (parent side)
# ------------------------------------------------------------------------------------------------


class Worker:
    """Driver side of one method's subprocess (see `serve`)."""

    def __init__(self, spec: dict):
        self.method = spec.get("name", spec["method"])
        self.error: str | None = None
        env = dict(os.environ)
        threads = str(spec["threads"])
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TOKENIZERS_PARALLELISM="false")
        env.setdefault("TRANSFORMERS_VERBOSITY", "error")
        # see the docstring: makes every call's peak visible
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
        )
        self._read("READY")

    def _read(self, prefix: str) -> str | None:
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        self.proc.wait()
        self.stderr.seek(0)
        tail = (self.stderr.read().strip().splitlines() or ["no output"])[-1]
        self.error = self.error or f"exit {self.proc.returncode}: {tail}"
        return None

    def call(self) -> float | None:
        """One timed call, in ms (None once the worker has failed)."""
        if self.error:
            return None
        self.proc.stdin.write("call\n")
        self.proc.stdin.flush()
        answer = self._read("TIME ")
        return None if answer is None else float(answer)

    def finish(self) -> dict:
        answer = None
        if not self.error:
            self.proc.stdin.write("finish\n")
            self.proc.stdin.flush()
            answer = self._read("RESULT ")
        if answer is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()
        return json.loads(answer) if answer is not None else {"method": self.method, "error": self.error}


def run_interleaved(specs: list[dict], rounds: int) -> dict[str, dict]:
    """Start every spec's worker, then `rounds` rounds of one timed call each, round r starting at worker r.

    Results by method (or the spec's `name`); workers finish in the order given, so the first one writes
    the reference codes before the others compare with them."""
    workers = [Worker(spec) for spec in specs]
    for index in range(rounds):
        shift = index % len(workers)
        for worker in workers[shift:] + workers[:shift]:
            worker.call()
    return {worker.method: worker.finish() for worker in workers}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _versions() -> str:
    return package_versions("torch", "vector-quantize-pytorch", "diffusers", "transformers")


def print_table(shape, num_queries, results: dict, args) -> None:
    num_codes, dim = shape
    print()
    print(
        f"== V x c = {num_codes} x {dim}, N = {num_queries} queries, {args.threads} threads, "
        f"median of {args.repeats} interleaved rounds after 1 warm-up =="
    )
    header = f"{'method':<46} {'median ms':>10} {'x floor':>8} {'x ours':>8} {'peak extra MiB':>15} {'codes != ours':>14}"
    print(header)
    print("-" * len(header))
    floor = results.get("floor", {}).get("median_ms")
    ours = results.get("ours", {}).get("median_ms")
    notes = []
    for method, label in METHODS:
        r = results.get(method)
        if r is None:
            continue
        if "error" in r:
            print(f"{label:<46} failed: {r['error']}")
            continue
        ms = r["median_ms"]
        if method == "ours":
            codes = "ref"
        elif method in NO_CODES:
            codes = "n/a"
        else:
            codes = str(r.get("disagree", "?"))
        print(
            f"{label:<46} {ms:>10.1f} {_fmt(ms / floor if floor else None, '.2f'):>8} "
            f"{_fmt(ms / ours if ours else None, '.2f'):>8} {r['extra_kib'] / 1024:>15.1f} {codes:>14}"
        )
        if r.get("disagree"):
            notes.append(
                f"  {label}: {r['disagree']} code(s) differ from ours; in float64 ours is closer in "
                f"{r['ours_closer']}, the peer in {r['peer_closer']}; largest relative distance gap "
                f"{r['max_rel_gap']:.1e} (float32 rounding in near-ties)"
            )
        if r.get("hidden_kib"):
            notes.append(
                f"  {label}: memory from ru_maxrss; up to {r['hidden_kib'] / 1024:.1f} MiB of a call's peak "
                "may hide under the earlier peak"
            )
    if "ours" in results and "float64_sample" in results["ours"]:
        r = results["ours"]
        notes.append(
            f"  ours vs float64 brute force on {r['float64_sample']} sampled queries: "
            f"{r['float64_disagree']} differ"
        )
    modes = {r["memory_mode"] for r in results.values() if "memory_mode" in r}
    notes.append(f"  peak extra memory: {', '.join(sorted(modes))}")
    for note in notes:
        print(note)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, to check the script quickly")
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed rounds (one call of every method each) after one warm-up",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every method run")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        serve(json.loads(args.worker))
        return
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    num_queries = QUICK_QUERIES if args.quick else FULL_QUERIES
    flat_shape = FLAT_SHAPE_QUICK if args.quick else FLAT_SHAPE_FULL

    print(f"nearest-code search benchmark ({'quick' if args.quick else 'full'})")
    print(f"  {cpu_model()}, {os.cpu_count()} logical CPUs visible; {_versions()}")
    print(
        f"  x ~ N(0, 1), E ~ N(0, {CODE_STD}^2), seed {args.seed}; every method in its own subprocess, "
        "timed calls in rotating rounds"
    )
    if args.quick:
        print(
            "  quick shapes: the figures check that the script runs; the targets are meant for the full shapes"
        )
    sys.stdout.flush()

    with tempfile.TemporaryDirectory(prefix="quantizer-bench-") as tmp:

        def spec(method, shape, n, save=False, reference=None):
            return {
                "method": method,
                "V": shape[0],
                "c": shape[1],
                "N": n,
                "seed": args.seed,
                "threads": args.threads,
                "save_codes": str(Path(tmp) / f"{shape[0]}x{shape[1]}_{n}_{method}.pt") if save else None,
                "reference_codes": reference,
            }

        def report(label, results, wall):
            for method, r in results.items():
                status = r.get("error") or f"{r['median_ms']:.1f} ms, {r['extra_kib'] / 1024:.1f} MiB extra"
                print(f"  [{label}] {method}: {status}", flush=True)
            print(f"  [{label}] {len(results)} workers x {args.repeats} rounds in {wall:.0f} s", flush=True)

        all_results = {}
        for shape in shapes:
            first = spec("ours", shape, num_queries, save=True)
            specs = [first] + [
                spec(method, shape, num_queries, reference=first["save_codes"]) for method, _ in METHODS[1:]
            ]
            start = time.perf_counter()
            all_results[shape] = run_interleaved(specs, args.repeats)
            report(f"{shape[0]}x{shape[1]}, N={num_queries}", all_results[shape], time.perf_counter() - start)
        start = time.perf_counter()
        specs = [{**spec("ours", flat_shape, n, save=True), "name": f"ours_n{n}"} for n in FLAT_QUERIES]
        flat_runs = run_interleaved(specs, args.repeats)
        report(f"{flat_shape[0]}x{flat_shape[1]}, flatness", flat_runs, time.perf_counter() - start)
        flat = {n: flat_runs[f"ours_n{n}"] for n in FLAT_QUERIES}

    for shape in shapes:
        print_table(shape, num_queries, all_results[shape], args)

    print()
    print(f"== flatness of ours' peak extra memory in N at V x c = {flat_shape[0]} x {flat_shape[1]} ==")
    for n, r in flat.items():
        if "error" in r:
            print(f"  N = {n:>6}: failed: {r['error']}")
        else:
            print(
                f"  N = {n:>6}: peak extra {r['extra_kib'] / 1024:7.1f} MiB (one tile = "
                f"{r['tile_mib']:.1f} MiB), median {r['median_ms']:.1f} ms"
            )

    print()
    print("== targets ==")

    def verdict(ok: bool | None, text: str) -> None:
        print(f"{'PASS' if ok else ('MISS' if ok is not None else 'N/A ')}  {text}")

    for shape in shapes:
        res = all_results[shape]
        name = f"{shape[0]}x{shape[1]}"
        ours = res["ours"].get("median_ms")
        floor = res["floor"].get("median_ms")
        if ours is None or floor is None:
            verdict(None, f"ours <= {FLOOR_TARGET:.2f}x floor at {name}: a run failed")
        else:
            verdict(
                ours <= FLOOR_TARGET * floor,
                f"ours <= {FLOOR_TARGET:.2f}x floor at {name}: {ours / floor:.3f}x",
            )
        peers = {m: res[m]["median_ms"] for m in PEERS if "median_ms" in res.get(m, {})}
        failed = [m for m in PEERS if m not in peers]
        if ours is None or not peers:
            verdict(None, f"ours faster than every peer at {name}: no timings")
        else:
            closest = min(peers, key=peers.get)
            text = (
                f"ours faster than every peer at {name}: closest peer {LABELS[closest]} "
                f"at {peers[closest] / ours:.2f}x ours"
            )
            if failed:
                text += f" (not measured: {', '.join(failed)})"
            verdict(None if failed else ours < peers[closest], text)
        extra = res["ours"].get("extra_kib")
        bound = res["ours"].get("tile_mib", math.nan) + TILE_SLACK_MIB
        verdict(
            None if extra is None else extra / 1024 <= bound,
            f"ours' peak extra memory <= one tile + {TILE_SLACK_MIB:.0f} MiB ({bound:.1f} MiB) at {name}: "
            f"{_fmt(None if extra is None else extra / 1024, '.1f')} MiB",
        )
    small, large = (flat[n].get("extra_kib") for n in FLAT_QUERIES)
    if small is None or large is None:
        verdict(None, "ours' peak extra memory flat in N: a run failed")
    else:
        bound = max(flat[n]["tile_mib"] for n in FLAT_QUERIES) + TILE_SLACK_MIB
        verdict(
            large <= FLAT_TOLERANCE * small + 2048 and large / 1024 <= bound,
            f"ours' peak extra memory flat in N at {flat_shape[0]}x{flat_shape[1]}: N={FLAT_QUERIES[0]} "
            f"{small / 1024:.1f} MiB, N={FLAT_QUERIES[1]} {large / 1024:.1f} MiB (bound {bound:.1f} MiB)",
        )
    disagreements = {
        (shape, m): r.get("disagree")
        for shape, res in all_results.items()
        for m, r in res.items()
        if m != "ours" and m not in NO_CODES and "error" not in r
    }
    total = sum(v or 0 for v in disagreements.values())
    print(
        f"info  codes: {total} disagreement(s) with ours over {len(disagreements)} method x shape runs "
        "(details under each table)"
    )
    for shape in shapes:
        r = all_results[shape].get("ours_nonorms", {})
        o = all_results[shape]["ours"]
        if "median_ms" in r and "median_ms" in o and "median_ms" in all_results[shape]["floor"]:
            print(
                f"info  ours without precomputed norms at {shape[0]}x{shape[1]}: "
                f"{r['median_ms'] / all_results[shape]['floor']['median_ms']:.3f}x floor, "
                f"peak extra {r['extra_kib'] / 1024:.1f} MiB (vs {o['extra_kib'] / 1024:.1f} MiB precomputed)"
            )


if __name__ == "__main__":
    main()
