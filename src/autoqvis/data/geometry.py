"""Frame geometry shared by training (:mod:`autoqvis.data.dataset`) and inference (:mod:`autoqvis.engine.inference`)."""

from __future__ import annotations


def shortest_edge_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """Output (h, w) with the shorter side ``short``, the longer at most ``max_size`` (detectron2 rule)."""
    scale = short / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)
