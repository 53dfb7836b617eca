"""Numbers as people read them: sizes, parameter counts, counts, durations. One home for all."""

from __future__ import annotations


def human_size(n: int) -> str:
    """Bytes in decimal units, as disks and the Hub count: "980 KB", "1.1 GB"."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_parameters(n: int) -> str:
    """A model's parameter count: "135M", "1.2B"."""
    if n >= 999_500_000:  # 999.9M reads as 1.0B, not 1000M
        return f"{n / 1e9:.1f}B"
    if n >= 1_000_000:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}K"


def human_count(n: int) -> str:
    """Downloads and likes: "950", "12.3k", "4.1M"."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def short_duration(seconds: float) -> str:
    """A short time, such as a reply's first token: "3 ms", "0.42 s", "12.5 s"."""
    if seconds < 0.1:
        return f"{max(seconds * 1000, 1):.0f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def long_duration(seconds: float) -> str:
    """A time left, such as a download's: "45 s", "3 min 05 s", "2 h 10 min"."""
    if seconds < 60:
        return f"{max(int(seconds), 1)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
