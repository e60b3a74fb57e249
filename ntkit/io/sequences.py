"""Sequences to run a model on, read from files or tables in memory: FASTA (plain or gzipped) and
TSV/CSV/parquet tables with a sequence column (``sequence``, ``seq`` or ``Sequence`` unless named),
an id column (``id`` or ``name``, else the row number) and any other columns, which are carried
into outputs. Files are streamed (``iter_sequences``); ``read_sequences`` holds them in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa

from ntkit.io.genome import iter_fasta

_FASTA = (".fa", ".fasta", ".fna")  # FASTA suffixes (optionally .gz); any other file is a table

def iter_sequences(path: str | Path, sequence_column: str | None = None, id_column: str | None = None,
                   batch_rows: int = 8192) -> Iterator[tuple[str, str, dict]]:
    """(id, sequence, other columns) per record, read lazily from FASTA (.fa/.fasta/.fna[.gz]) or
    a TSV/CSV/parquet table with a ``sequence`` (or ``seq``) column. Ids default to the row number."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(_FASTA):
        for rid, seq in iter_fasta(path):  # duplicate ids are kept: one row per record, in input order
            yield rid, seq, {}
        return
    schema = table_schema(path)
    col = sequence_column or next((c for c in ("sequence", "seq", "Sequence") if c in schema.names), None)
    if col is None or col not in schema.names:
        raise ValueError(f"{path}: no sequence column (have {schema.names}); name it with --sequence-column "
                         "(Python: sequence_column=)")
    idc = id_col(schema, id_column)
    i = 0
    for batch in _table_batches(path, batch_rows):
        d = batch.to_pydict()
        seqs, extra = d.pop(col), d
        ids = [str(x) for x in extra.pop(idc)] if idc else [str(i + k) for k in range(len(seqs))]
        for k, s in enumerate(seqs):
            yield ids[k], "" if s is None else str(s), {c: v[k] for c, v in extra.items()}
        i += len(seqs)


def id_col(schema: pa.Schema, id_column: str | None = None) -> str | None:
    """The column that names the records: ``id_column``, else ``id`` or ``name`` when present."""
    if id_column is not None and id_column not in schema.names:
        raise ValueError(f"no column {id_column!r} (have {schema.names})")
    return id_column or next((c for c in ("id", "name") if c in schema.names), None)


def _table_batches(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    if path.name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        return
    import pyarrow.csv as pcsv

    name = path.name.lower().removesuffix(".gz")
    sep = "\t" if name.endswith((".tsv", ".txt")) else ","
    try:
        reader = pcsv.open_csv(path, parse_options=pcsv.ParseOptions(delimiter=sep),
                               read_options=pcsv.ReadOptions(block_size=1 << 24))
        yield from reader
    except pa.ArrowInvalid as e:
        what = " ".join(str(e).split())
        hint = "" if "column" in what.lower() and "expected" in what.lower() else " (a column's type changes after the first rows?)"
        raise ValueError(f"{path}: {what}{hint}") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: {e} (a truncated or corrupt file)") from None


def table_schema(path: str | Path) -> pa.Schema:
    """The columns of a FASTA (none) or table input, types as read."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(_FASTA):
        return pa.schema([])
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).schema_arrow
    return next(_table_batches(path, 1024)).schema


def read_sequences(path, sequence_column: str | None = None, id_column: str | None = None):
    """(ids, sequences, table) in memory; ``table`` is the other columns (None for FASTA).
    ``path``: a file, or a table already in memory (a pandas DataFrame, a pyarrow Table, a
    Hugging Face ``datasets.Dataset``: anything with ``to_pandas``), with the same column rules."""
    import pandas as pd

    if not isinstance(path, (str, Path)):
        return _memory_table(path, sequence_column, id_column)
    recs = list(iter_sequences(path, sequence_column, id_column))
    ids, seqs = [r[0] for r in recs], [r[1] for r in recs]
    if Path(path).name.lower().removesuffix(".gz").endswith(_FASTA):
        return ids, seqs, None
    cols = [c for c in table_schema(path).names if recs and c in recs[0][2]]
    return ids, seqs, pd.DataFrame([r[2] for r in recs], columns=cols)


def _memory_table(table, sequence_column: str | None, id_column: str | None):
    import pandas as pd

    df = table if isinstance(table, pd.DataFrame) else table.to_pandas() if hasattr(table, "to_pandas") else None
    if df is None:
        raise TypeError(f"a path or a table (pandas DataFrame, pyarrow Table, datasets.Dataset), not {type(table).__name__}")
    names = [str(c) for c in df.columns]
    col = sequence_column or next((c for c in ("sequence", "seq", "Sequence") if c in names), None)
    if col is None or col not in names:
        raise ValueError(f"the table has no sequence column (have {names}); name it with sequence_column=")
    idc = id_col(pa.schema([(n, pa.string()) for n in names]), id_column)
    seqs = ["" if s is None else str(s) for s in df[col]]
    ids = [str(x) for x in df[idc]] if idc else [str(i) for i in range(len(seqs))]
    rest = df.drop(columns=[c for c in (col, idc) if c]).reset_index(drop=True)
    return ids, seqs, rest
