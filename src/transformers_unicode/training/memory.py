"""Peak resident memory per stage (issue 17 §1): what a 16 GB laptop needs to know before it is killed.

Linux keeps a process's high-water mark of resident memory (`VmHWM` in /proc/self/status) and lets the
process reset it (writing 5 to /proc/self/clear_refs), so each stage's own peak is measured without a
sampling thread. Elsewhere the lifetime peak (`ru_maxrss`) is the best available, and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys


def reset_peak_memory() -> bool:
    """Start a new peak window; False where the OS cannot reset it (the next reading is the lifetime peak)."""
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


def _status_gb(field: str) -> float | None:
    """A memory line of /proc/self/status (`VmHWM`, `VmRSS`) in GB, or None where there is no /proc."""
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024 / 1e9  # kB
    except OSError:
        pass
    return None


def peak_memory_gb() -> float:
    """The peak resident memory (GB) since the last `reset_peak_memory`, or of the whole process."""
    peak = _status_gb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9  # bytes on macOS, kB on Linux


def resident_memory_gb() -> float | None:
    """The resident memory (GB) now (`VmRSS`), or None where /proc is not there."""
    return _status_gb("VmRSS")


def release_memory() -> bool:
    """Collect garbage and hand the heap's free pages back to the OS, between the main job's stages.

    A stage's freed tensors and arrays stay resident in glibc's heap (one arena per thread that allocated),
    and the next stage does not always reuse them: the quickstart's evaluation peaked 0.6 GB higher after
    Stage I had run in the same process than without it (README, issue 17 §1). Python's `gc.collect()` frees
    the cycles; `malloc_trim(0)` (glibc only, hence ctypes: neither torch nor the standard library expose
    it) returns every arena's free pages. True where the trim ran.
    """
    gc.collect()
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)  # returns 1 if it released anything, 0 if there was nothing to release
        return True
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return False


__all__ = ["peak_memory_gb", "release_memory", "reset_peak_memory", "resident_memory_gb"]
