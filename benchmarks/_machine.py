"""What a benchmark prints about the machine it ran on (shared by the scripts in this folder)."""

import platform
from importlib.metadata import PackageNotFoundError, version


def package_versions(*names: str) -> str:
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} missing")
    return ", ".join(parts)


def _cpuinfo(field: str) -> str | None:
    """The value of the first `field` line of /proc/cpuinfo (None where there is no such file or line)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def cpu_flags(names) -> str:
    """Whether the CPU reports each named instruction-set flag, e.g. 'avx2 yes, avx512_bf16 no'."""
    flags = _cpuinfo("flags")
    if flags is None:
        return "flags unknown"
    present = set(flags.split())
    return ", ".join(f"{name} {'yes' if name in present else 'no'}" for name in names)
