"""``[n]`` and ``[n, m]`` citation markers in answer text."""

from __future__ import annotations

import re

MARKER = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


def marker_numbers(marker: re.Match[str]) -> list[int]:
    """The source numbers of one marker match, in order."""
    return [int(n) for n in re.findall(r"\d+", marker.group(1))]
