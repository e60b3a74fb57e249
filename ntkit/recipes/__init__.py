"""Pretraining recipes shipped with ntkit (package data): ``tiny-cpu``, ``ntv3-small-cpu`` (the one-CPU-hour model), ``ntv3-tiny-cpu`` (NTv3 with
its length curriculum), ``human-ref``, ``1000g``, ``multispecies``. ``--config tiny-cpu`` names one; a path names any other YAML file.

Paths in a recipe may use ``${VARS}`` from the environment; ``${NTKIT_DATA}`` defaults to the
data folder of ``ntkit.io.datasets.data_dir`` (the demo data shipped with ntkit unless
``$NTKIT_DATA`` is set). Relative paths are relative to the recipe file.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """A YAML file given by path, or a shipped recipe by name."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = HERE / f"{str(name_or_path).removesuffix('.yaml')}.yaml"
    if shipped.is_file() and len(p.parts) == 1:
        return shipped
    raise FileNotFoundError(f"recipe not found: {name_or_path} (a YAML file, or one of {', '.join(names())})")

