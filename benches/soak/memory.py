"""What the soak scripts read of their own memory (Linux: /proc/self/status)."""

from __future__ import annotations

from pathlib import Path


def memory_mib() -> tuple[float, float]:
    """(resident now, peak resident so far) of this process, in MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]
