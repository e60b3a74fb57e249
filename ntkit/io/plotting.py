"""Figures without pyplot: ``matplotlib.figure.Figure`` objects, so importing or plotting with
ntkit never switches a notebook's backend nor registers figures with pyplot; atomic saving."""

from __future__ import annotations

from pathlib import Path

from ntkit.runtime.jobs import atomic_output


def figure(**kwargs):
    """A ``matplotlib.figure.Figure`` (``figsize=...``); draw with ``fig.subplots(...)``."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, path: str | Path, dpi: int = 130, tight: bool = True) -> Path:
    """Save ``fig`` atomically (temporary name, then rename)."""
    path = Path(path)
    if tight:
        fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path
