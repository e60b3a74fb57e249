"""Outputs that never break, and jobs that shard and resume.

Atomic outputs: every file is written under a temporary name in its own folder
(``.tmp-<pid>-<name>``) and renamed when complete, so a kill or a full disk leaves the previous
file intact (``atomic_output``). ``check_output`` runs before any compute: the folder must be
writable and the output must not be one of the inputs.

Sharded, resumable jobs (``PartStore``): the input is cut, in input order, into chunks of
``chunk_size`` items (VCF records, sequences, regions); chunk ``c`` belongs to shard
``c mod N``. Each chunk's results go to ``<out>.parts/part-<c>.parquet`` (atomically), beside a
``manifest.json`` that records the job, the input checksums, the options and the model
fingerprint. A re-run with the same manifest skips the finished chunks; a re-run with a
different one is refused with the differences (``restart=True`` discards the old parts). When
every chunk is done, the process that notices first (holding ``merge.lock``) joins the parts in
input order into the final outputs and removes the parts folder; ``ntkit merge <out>`` does the
same by hand (after a Slurm array, say). Under ``torchrun`` the shard is ``RANK/WORLD_SIZE``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

T = TypeVar("T")
MANIFEST_VERSION = 1


# -- atomic outputs ------------------------------------------------------------------------------------------


def _tmp_name(path: Path) -> Path:
    # Same folder (rename stays on one file system), same suffixes (tools pick formats by them).
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, index_suffixes: Sequence[str] = ()) -> Iterator[Path]:
    """``with atomic_output(p) as tmp: write(tmp)``: ``tmp`` becomes ``p`` only if the block
    completes. ``index_suffixes`` (e.g. ``(".tbi",)``): side files ``tmp + suffix`` renamed with it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for s in index_suffixes:
            if os.path.exists(str(tmp) + s):
                os.replace(str(tmp) + s, str(path) + s)
    finally:
        for p in [tmp] + [Path(str(tmp) + s) for s in index_suffixes]:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse, before any compute, an output that is one of the inputs or lies in a folder that
    cannot be written (created when missing)."""
    path = Path(path)
    for i in inputs:
        if i is not None and Path(i).exists() and path.exists() and os.path.samefile(i, path):
            raise ValueError(f"output {path} is an input file; choose another --out")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = _tmp_name(path.parent / ".ntkit-write-test")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write into {path.parent}: {e.strerror or e}") from e
    return path


# -- shards --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): chunk ``c`` is this shard's when ``c % count == index``."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        """``"I/N"`` (0-based, e.g. ``$SLURM_ARRAY_TASK_ID/$N``); None: ``torchrun``'s
        RANK/WORLD_SIZE when set, else the whole input."""
        if text is None:
            return cls.from_env()
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m:
            raise ValueError(f"--shard must be I/N with 0 <= I < N, not {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def from_env(cls) -> "Shard":
        n = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), n) if n > 1 else cls()

    def owns(self, chunk: int) -> bool:
        return chunk % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def chunks(items: Iterable[T], size: int, weight: Callable[[T], int] | None = None, max_weight: int | None = None) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items (and at most ``max_weight`` summed ``weight``,
    a list holding at least one item). Boundaries depend on the input alone."""
    cur: list[T] = []
    w = 0
    for x in items:
        wx = weight(x) if weight else 0
        if cur and (len(cur) >= size or (max_weight is not None and w + wx > max_weight)):
            yield cur
            cur, w = [], 0
        cur.append(x)
        w += wx
    if cur:
        yield cur


# -- fingerprints --------------------------------------------------------------------------------------------


def file_checksum(path: str | os.PathLike, block: int = 1 << 22) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(block):
            h.update(b)
    return "sha256:" + h.hexdigest()


def genome_fingerprint(genome) -> str:
    """A reference is named by its contigs and their lengths plus its file's size (hashing a whole
    genome on every run would cost more than a small job)."""
    h = hashlib.sha256(json.dumps([genome.lengths, os.path.getsize(genome.path)]).encode())
    return "contigs:" + h.hexdigest()[:32]


def model_fingerprint(model) -> str:
    """Configuration plus, per tensor, its shape and the float64 sum and absolute sum of its values:
    different weights or a different model give a different fingerprint."""
    import torch

    config = model.config.to_dict() if hasattr(model, "config") else {"module": type(model).__name__}  # e.g. a FinetunedModel
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, p in model.state_dict().items():
            x = p.detach().double()
            h.update(f"{name}{tuple(p.shape)}{float(x.sum()):.10e}{float(x.abs().sum()):.10e}".encode())
    return "model:" + h.hexdigest()[:32]


# -- parts ---------------------------------------------------------------------------------------------------


class PartStore:
    """``<out>.parts/``: the manifest, one parquet part per chunk, the chunk count once known."""

    def __init__(self, out: str | os.PathLike, manifest: dict, shard: Shard = Shard(), restart: bool = False):
        out = Path(out)
        self.dir = out.with_name(out.name + ".parts")
        self.shard = shard
        self.manifest = {"version": MANIFEST_VERSION, **manifest}
        path = self.dir / "manifest.json"
        if restart and self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if path.exists():
            old = json.loads(path.read_text())
            if old != json.loads(json.dumps(self.manifest)):
                diff = sorted(k for k in set(old) | set(self.manifest) if old.get(k) != json.loads(json.dumps(self.manifest.get(k))))
                raise ValueError(f"{self.dir} holds parts of another run (differs in: {', '.join(diff)}); "
                                 "use the same options, or --restart to discard them")
        else:
            write_text_atomic(path, json.dumps(self.manifest, indent=2))
        for stale in self.dir.glob(".tmp-*"):  # a killed writer's leftovers (any pid: parts are re-done)
            if not _alive(stale):
                stale.unlink(missing_ok=True)

    @classmethod
    def open(cls, out: str | os.PathLike) -> "PartStore":
        out = Path(out)
        d = out if out.name.endswith(".parts") else out.with_name(out.name + ".parts")
        if not (d / "manifest.json").exists():
            raise FileNotFoundError(f"no parts to merge: {d / 'manifest.json'} not found")
        self = cls.__new__(cls)
        self.dir, self.shard = d, Shard()
        self.manifest = json.loads((d / "manifest.json").read_text())
        return self

    def part(self, chunk: int) -> Path:
        return self.dir / f"part-{chunk:06d}.parquet"

    def done(self, chunk: int) -> bool:
        return self.part(chunk).exists()

    def todo(self, chunk: int) -> bool:
        return self.shard.owns(chunk) and not self.done(chunk)

    def set_total(self, n_chunks: int) -> None:
        path = self.dir / "chunks.json"
        if path.exists() and json.loads(path.read_text())["chunks"] != n_chunks:
            raise ValueError(f"{self.dir}: the input changed while the job ran ({n_chunks} chunks now)")
        write_text_atomic(path, json.dumps({"chunks": n_chunks}))

    def total(self) -> int | None:
        path = self.dir / "chunks.json"
        return json.loads(path.read_text())["chunks"] if path.exists() else None

    def missing(self) -> list[int] | None:
        """Chunks without a part; None while no shard has reached the end of the input."""
        n = self.total()
        return None if n is None else [c for c in range(n) if not self.done(c)]

    def complete(self) -> bool:
        return self.missing() == []

    def parts(self) -> list[Path]:
        return [self.part(c) for c in range(self.total() or 0)]

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every part's rows, in input order."""
        for p in self.parts():
            yield from pq.ParquetFile(p).iter_batches(batch_size=8192)

    @contextlib.contextmanager
    def merge_lock(self) -> Iterator[bool]:
        """True when this process holds the lock (a dead holder's lock on this host is taken over)."""
        lock = self.dir / "merge.lock"
        me = f"{socket.gethostname()} {os.getpid()}"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            host, _, pid = lock.read_text().partition(" ")
            if host != socket.gethostname() or _pid_alive(int(pid or 0)):
                yield False
                return
            lock.write_text(me)
        else:
            with os.fdopen(fd, "w") as f:
                f.write(me)
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(tmp: Path) -> bool:
    m = re.match(r"\.tmp-(\d+)-", tmp.name)
    return bool(m) and int(m.group(1)) != os.getpid() and _pid_alive(int(m.group(1)))


class PartWriter:
    """Rows of one chunk, streamed to parquet by row groups of ``schema`` and renamed on close."""

    def __init__(self, path: Path, schema: pa.Schema, row_group: int = 4096):
        self._cm = atomic_output(path)
        self._tmp = self._cm.__enter__()
        self.schema, self.row_group = schema, row_group
        self._writer = pq.ParquetWriter(self._tmp, schema)
        self._rows: list[dict] = []

    def add(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.row_group:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> None:
        self.flush()
        self._writer.close()
        self._cm.__exit__(None, None, None)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._cm.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def run_chunks(store: PartStore, items: Iterable[T], chunk_size: int, process: Callable[[list[T]], Iterable[dict]],
               schema: pa.Schema, *, max_weight: int | None = None, weight: Callable[[T], int] | None = None,
               row_group: int = 4096, progress: bool = True, desc: str = "", unit: str = "item", total: int | None = None) -> int:
    """The chunk loop of every job: cut ``items`` into chunks, ``process`` this shard's unfinished
    ones into rows, stream them to their part, record the chunk count. Returns the chunk count."""
    from tqdm.auto import tqdm

    n = 0
    desc = f"{desc} (shard {store.shard})" if store.shard.count > 1 else desc
    try:
        with tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, disable=not progress) as bar:
            for c, chunk in enumerate(chunks(items, chunk_size, weight, max_weight)):
                n = c + 1
                if store.todo(c):
                    with PartWriter(store.part(c), schema, row_group) as w:
                        for row in process(chunk):
                            w.add(row)
                bar.update(len(chunk))
    except BaseException:
        if not any(store.dir.glob("part-*.parquet")):  # nothing to resume: leave no trace
            store.remove()
        raise
    store.set_total(n)
    return n


def finish(store: PartStore, merge: Callable[[PartStore], dict]) -> dict:
    """Join the parts into the outputs (``merge(store)``) when every chunk is done; one process
    does it, the others return ``merged: False`` and what is still awaited."""
    if not store.complete():
        missing = store.missing()
        return {"merged": False, "waiting_for": f"{len(missing)} chunk(s)" if missing is not None else "the end of the input"}
    with store.merge_lock() as held:
        if not held:
            return {"merged": False, "waiting_for": "another process merging"}
        summary = merge(store)
        store.remove()
    return {"merged": True, **summary}


# -- final outputs from parts -------------------------------------------------------------------------------


def write_parquet(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: str | os.PathLike) -> Path:
    with atomic_output(path) as tmp, pq.ParquetWriter(tmp, schema) as w:
        for b in batches:
            w.write_batch(b)
    return Path(path)


def write_delimited(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: str | os.PathLike, sep: str | None = None) -> Path:
    """TSV (``.tsv``/``.txt``) or CSV, missing values as ``NA``, streamed batch by batch."""
    path = Path(path)
    sep = sep or ("\t" if path.suffix in (".tsv", ".txt") else ",")
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        header = True
        for b in batches:
            b.to_pandas().to_csv(f, sep=sep, index=False, header=header, na_rep="NA")
            header = False
        if header:
            f.write(sep.join(schema.names) + "\n")
    return Path(path)


def write_table_file(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: str | os.PathLike) -> Path:
    """Parquet (``.parquet``) or delimited text, by suffix."""
    if str(path).endswith(".parquet"):
        return write_parquet(batches, schema, path)
    return write_delimited(batches, schema, path)


def write_dataframe(df, path: str | os.PathLike) -> Path:
    """An in-memory table as ``write_table_file`` writes streamed ones (parquet, or TSV/CSV with ``NA``)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    return write_table_file(table.to_batches(), table.schema, path)
