"""Peak resident memory per stage (issue 17 §1): what a 16 GB laptop needs to know before it is killed.

Linux keeps a process's high-water mark of resident memory (`VmHWM` in /proc/self/status) and lets the
process reset it (writing 5 to /proc/self/clear_refs), so each stage's own peak is measured without a
sampling thread. Elsewhere the lifetime peak (`ru_maxrss`) is the best available, and says so.
"""

from __future__ import annotations

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


def peak_memory_gb() -> float:
    """The peak resident memory (GB) since the last `reset_peak_memory`, or of the whole process."""
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9  # bytes on macOS, kB on Linux


__all__ = ["peak_memory_gb", "reset_peak_memory"]
