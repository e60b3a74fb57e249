"""The data that ships inside the package (``ntkit/demo_data``: a real GRCh37 chr20 subset at its
true coordinates, see its README; ``ntkit/catalogue.yaml``: what ``ntkit data fetch`` downloads)
and the data folder every default uses: an explicit folder, else ``$NTKIT_DATA``, else the
shipped demo data. Recipes name files relative to it (``${NTKIT_DATA}/genomes/...``)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
SHIPPED = PACKAGE / "demo_data"
CATALOGUE = PACKAGE / "catalogue.yaml"


def data_dir(folder: str | os.PathLike | None = None) -> Path:
    """The data folder: ``folder``, else ``$NTKIT_DATA``, else the demo data shipped with ntkit."""
    return Path(folder or os.environ.get("NTKIT_DATA") or SHIPPED)


def data_file(folder: str | os.PathLike, rel: str) -> Path:
    """``folder/rel``, or its gzipped twin ``rel.gz`` (the shipped tables are gzipped); a missing
    file is an error that says how to get it."""
    for p in (Path(folder) / rel, Path(folder) / (rel + ".gz")):
        if p.exists():
            return p
    raise FileNotFoundError(f"{rel} not found in the data folder {folder} (`ntkit data fetch --list` shows what can be "
                            "downloaded; --data / $NTKIT_DATA choose another folder)")
