"""Matplotlib without a display, and figure saving."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 130, tight: bool = True) -> Path:
    """Save ``fig`` atomically (temporary name, then rename) and close it."""
    from .jobs import atomic_output

    path = Path(path)
    if tight:
        fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    pyplot().close(fig)
    return path
