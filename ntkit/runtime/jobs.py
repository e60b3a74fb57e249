"""Outputs that never break, and jobs that shard, resume and merge only what they can verify.

Atomic outputs: every file is written under a temporary name in its own folder
(``.tmp-<host>-<pid>-<name>``) and renamed when complete, so a kill or a full disk leaves the
previous file intact (``atomic_output``); a job sweeps the temporary files of dead processes of
this host from its output folder when it starts. ``check_output`` runs before any compute: the
folder must be writable and the output must not be one of the inputs.

Jobs (``Job`` + ``run_job``, the one framework of ``embed``, ``score-variants``, ``mutagenesis``,
``predict`` ...): the input is cut, in input order, into chunks of ``chunk_size`` items (VCF
records, sequences, bases); chunk ``c`` belongs to shard ``c mod N``. Each chunk's rows go to
``<out>.parts/part-<c>.parquet`` with a record of its rows, input items and sha256
(``part-<c>.json``, written after the part), beside a ``manifest.json`` that records the job, the
input checksums, the options and the model fingerprint. A re-run with the same manifest skips the
finished chunks; a re-run with a different one is refused naming each differing field with both
values (``restart=True`` discards the old parts). The process that finishes the last chunk
(holding ``merge.lock``) verifies every part (present, no extra ones, sha256 and row count as
recorded, input items summing to the input's count) and only then joins them into the outputs;
the parts folder is removed once every output is written, and a receipt
(``.<out>.ntkit-job.json``) lets a later identical run say it is done instead of recomputing.
``ntkit merge <out>`` merges by hand (after a Slurm array, say). All outputs of a job live in one
folder, the parts folder's; the manifest names them by file name only, so a manifest cannot make
a merge write anywhere else. Under ``torchrun`` the shard is ``RANK/WORLD_SIZE``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from ntkit.core import __version__
from ntkit.runtime.progress import bar as progress_bar

T = TypeVar("T")
MANIFEST_VERSION = 2
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # in temporary names: sweep only this host's
_TMP = re.compile(r"\.tmp-([0-9a-f]{8})-(\d+)-")


# -- atomic outputs ------------------------------------------------------------------------------------------


def _tmp_name(path: Path) -> Path:
    # Same folder (rename stays on one file system), same suffixes (tools pick formats by them).
    return path.with_name(f".tmp-{HOST}-{os.getpid()}-{path.name}")


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


def sweep_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files a killed writer of this host left in ``folder`` (its pid is
    gone); those of live processes and of other hosts stay. Returns how many were removed."""
    n = 0
    with contextlib.suppress(OSError):
        for p in Path(folder).glob(".tmp-*"):
            m = _TMP.match(p.name)
            if m and m.group(1) == HOST and not _pid_alive(int(m.group(2))):
                with contextlib.suppress(OSError):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                    n += 1
    return n


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
    """Shard ``index`` of ``count`` (0-based): chunk ``c`` is this shard's when ``c % count == index``.
    ``merge=False``: this shard writes its parts only, the merge is left to ``ntkit merge`` (a
    workflow manager's own step)."""

    index: int = 0
    count: int = 1
    merge: bool = field(default=True, compare=False)

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


def weights_fingerprint(config: dict, tensors: Iterable[tuple[str, Any]]) -> str:
    """A configuration plus, per tensor, its name, shape and the float64 sum and absolute sum of
    its values: different weights or a different model give a different fingerprint."""
    import torch

    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, p in tensors:
            x = p.detach().double()
            h.update(f"{name}{tuple(p.shape)}{float(x.sum()):.10e}{float(x.abs().sum()):.10e}".encode())
    return "model:" + h.hexdigest()[:32]


def model_fingerprint(model) -> str:
    """``weights_fingerprint`` of a model's configuration and every tensor of its state."""
    config = model.config.to_dict() if hasattr(model, "config") else {"module": type(model).__name__}  # e.g. a FinetunedModel
    return weights_fingerprint(config, model.state_dict().items())


def redact(argv: Sequence[str]) -> list[str]:
    """A command line as outputs may record it: the value of ``--token`` (a hub secret) hidden."""
    out, hide = [], False
    for a in argv:
        out.append("***" if hide else "--token=***" if a.startswith("--token=") else a)
        hide = a == "--token"
    return out


def provenance(model=None) -> dict:
    """Who made an output: ntkit's version, the model's name or path and the command line."""
    import sys

    about = {"ntkit": __version__, "command": " ".join([Path(sys.argv[0]).name] + redact(sys.argv[1:])) if sys.argv else ""}
    if model is not None:
        about["model"] = str(getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "name", type(model).__name__))
        if getattr(model, "licence", None):  # weights under their own licence (SpliceAI's: CC BY-NC 4.0) say so in every output
            about["licence"] = model.licence
    return about


# -- parts ---------------------------------------------------------------------------------------------------


def _normal(obj: Any) -> Any:
    """JSON's view of a value (tuples become lists), so a manifest compares equal to its file."""
    return json.loads(json.dumps(obj, default=str))


def _short(v: Any) -> str:
    t = json.dumps(v, default=str)
    return t if len(t) <= 60 else t[:28] + "..." + t[-28:]


def manifest_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key.sub: old -> new`` for every differing field (nested dicts walked); ``about`` (who ran
    it, how) is information, not identity."""
    out = []
    for k in sorted((set(old) | set(new)) - ({"about"} if not prefix else set()), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += manifest_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {_short(a)} -> {_short(b)}")
    return out


def _read_json(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is unreadable ({type(e).__name__}); {fix}") from None


def receipt_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.ntkit-job.json")


class PartStore:
    """``<out>.parts/``: the manifest, one parquet part per chunk with its record (``part-<c>.json``:
    rows, input items, sha256), the chunk and item counts once known (``chunks.json``)."""

    def __init__(self, out: str | os.PathLike, manifest: dict, shard: Shard = Shard(), restart: bool = False):
        out = Path(out)
        self.dir = out.with_name(out.name + ".parts")
        self.shard = shard
        self.manifest = _normal({"version": MANIFEST_VERSION, **manifest})
        self.finished: dict | None = None  # the result of an identical job already merged
        self.schema: pa.Schema | None = None  # the rows' schema, when the job that writes them is known
        receipt = receipt_path(out)
        if restart:
            shutil.rmtree(self.dir, ignore_errors=True)
            receipt.unlink(missing_ok=True)
        elif receipt.exists() and not self.dir.exists():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                r = json.loads(receipt.read_text())
                if not manifest_diff(r["manifest"], self.manifest) and all((self.dir.parent / o).exists() for o in self.manifest.get("outputs", [])):
                    self.finished = r["result"]
                    return
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "manifest.json"
        if path.exists():
            old = _read_json(path, "delete the parts folder or use --restart")
            diff = manifest_diff(old, self.manifest) if isinstance(old, dict) else ["manifest: not a JSON object"]
            if diff:
                raise ValueError(f"{self.dir} holds parts of another run ({'; '.join(diff)}); use the same inputs and "
                                 "options, or --restart to discard them")
        else:
            write_text_atomic(path, json.dumps(self.manifest, indent=2))
        sweep_temporaries(self.dir)

    @classmethod
    def open(cls, out: str | os.PathLike) -> "PartStore":
        """The parts of a job, for ``ntkit merge <out>`` (``out``: the job's first output or its
        ``.parts`` folder)."""
        out = Path(out)
        d = out if out.name.endswith(".parts") else out.with_name(out.name + ".parts")
        if not (d / "manifest.json").exists():
            raise FileNotFoundError(f"no parts to merge: {d / 'manifest.json'} not found")
        self = cls.__new__(cls)
        self.dir, self.shard, self.finished, self.schema = d, Shard(), None, None
        self.manifest = _read_json(d / "manifest.json", "it cannot be merged: rerun the job with --restart")
        self.outputs  # noqa: B018  (checked now, before anything is read)
        return self

    @property
    def outputs(self) -> list[Path]:
        """The job's outputs: file names in the parts folder's folder (nothing else can be named)."""
        names = self.manifest.get("outputs") if isinstance(self.manifest, dict) else None
        if not names or not all(isinstance(n, str) and n and n == Path(n).name and n not in (".", "..") for n in names):
            raise ValueError(f"{self.dir / 'manifest.json'}: outputs must be file names beside {self.dir.name}, not {names!r} "
                             "(an edited or foreign manifest: nothing was written)")
        if names[0] + ".parts" != self.dir.name:
            raise ValueError(f"{self.dir / 'manifest.json'}: its first output {names[0]!r} does not own {self.dir.name}")
        return [self.dir.parent / n for n in names]

    def part(self, chunk: int) -> Path:
        return self.dir / f"part-{chunk:06d}.parquet"

    def record(self, chunk: int) -> Path:
        return self.dir / f"part-{chunk:06d}.json"

    def done(self, chunk: int) -> bool:
        return self.part(chunk).exists() and self.record(chunk).exists()

    def todo(self, chunk: int) -> bool:
        return self.shard.owns(chunk) and not self.done(chunk)

    def set_total(self, n_chunks: int, n_items: int) -> None:
        path = self.dir / "chunks.json"
        if path.exists():
            old = _read_json(path, "use --restart")
            if old != {"chunks": n_chunks, "items": n_items}:
                raise ValueError(f"{self.dir}: the input changed while the job ran ({_short(old)} before, "
                                 f"{n_chunks} chunks / {n_items} items now); rerun with --restart")
        write_text_atomic(path, json.dumps({"chunks": n_chunks, "items": n_items}))

    def counts(self) -> dict | None:
        path = self.dir / "chunks.json"
        if not path.exists():
            return None
        c = _read_json(path, "delete it and rerun any shard to write it again, or --restart")
        if not (isinstance(c, dict) and isinstance(c.get("chunks"), int) and isinstance(c.get("items"), int) and c["chunks"] >= 0):
            raise ValueError(f"{path}: not a chunk count ({_short(c)}); delete it and rerun any shard, or --restart")
        return c

    def total(self) -> int | None:
        c = self.counts()
        return None if c is None else c["chunks"]

    def missing(self) -> list[int] | None:
        """Chunks without a finished part; None while no shard has reached the end of the input."""
        n = self.total()
        return None if n is None else [c for c in range(n) if not self.done(c)]

    def complete(self) -> bool:
        return self.missing() == []

    def parts(self) -> list[Path]:
        return [self.part(c) for c in range(self.total() or 0)]

    def verify(self) -> int:
        """Before anything is merged: every chunk's part and record present, no part beyond the
        chunk count, each part's sha256 and rows as recorded when it was written, the input items
        of the parts summing to the input's. Returns the rows. A mismatch is a ValueError naming
        the part and the fix."""
        counts = self.counts()
        if counts is None:
            raise ValueError(f"{self.dir}: no shard has reached the end of the input yet (chunks.json missing)")
        n = counts["chunks"]
        fix = "delete it and its .json and rerun its shard (chunk c belongs to shard c mod N), or rerun with --restart"
        for p in self.dir.glob("part-*.parquet"):
            m = re.fullmatch(r"part-(\d+)\.parquet", p.name)
            if m and int(m.group(1)) >= n:
                raise ValueError(f"{p} lies beyond the {n} chunk(s) of {self.dir / 'chunks.json'}: the folder was edited; "
                                 "rerun with --restart")
        per_item = self.manifest.get("rows_per_item")  # rows of one input item, where the job knows it
        if per_item is not None and not (isinstance(per_item, int) and per_item >= 0):
            raise ValueError(f"{self.dir / 'manifest.json'}: rows_per_item {per_item!r} is not a count; an edited manifest: "
                             "rerun with --restart")
        rows = items = 0
        for c in range(n):
            part, rec = self.part(c), self.record(c)
            if not self.done(c):
                raise ValueError(f"{part if not part.exists() else rec} is missing: rerun its shard (chunk {c}), or --restart")
            r = _read_json(rec, fix)
            try:
                want_rows, want_items, want_sha = int(r["rows"]), int(r["items"]), str(r["sha256"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{rec}: not a part record; {fix}") from None
            if file_checksum(part) != want_sha:
                raise ValueError(f"{part} was changed after it was written (sha256 differs from {rec.name}); {fix}")
            try:
                got = pq.ParquetFile(part).metadata.num_rows
            except (OSError, pa.ArrowException) as e:
                raise ValueError(f"{part} is unreadable ({e}); {fix}") from None
            if got != want_rows:
                raise ValueError(f"{part} holds {got} rows, {want_rows} were written; {fix}")
            if per_item is not None and got != per_item * want_items:
                raise ValueError(f"{part} holds {got} rows for {want_items} input items ({per_item} each): rows were removed or "
                                 f"added with its record rewritten; {fix}")
            rows += got
            items += want_items
        if items != counts["items"]:
            raise ValueError(f"{self.dir}: the parts hold {items} input items of {counts['items']}; the folder was edited; "
                             "rerun with --restart")
        return rows

    def rows_schema(self) -> pa.Schema:
        """The schema of the rows: the job's, else the first part's (a merge by hand)."""
        if self.schema is not None:
            return self.schema
        parts = self.parts()
        if not parts:
            raise ValueError(f"{self.dir}: no part holds a row and the job's schema is unknown; rerun the job")
        return pq.ParquetFile(parts[0]).schema_arrow

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
            host, _, pid = lock.read_text(errors="replace").partition(" ")
            if not pid.strip().isdigit():
                raise ValueError(f"{lock} is not a merge lock of ntkit ({lock.read_text(errors='replace')[:40]!r}); "
                                 "delete it when no merge is running") from None
            if host != socket.gethostname() or _pid_alive(int(pid)):
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


class PartWriter:
    """Rows of one chunk, streamed to parquet by row groups of ``schema``; on ``close(items)`` the
    part is renamed into place, then its record (rows, items, sha256) is written: a part counts as
    done only with its record."""

    def __init__(self, path: Path, schema: pa.Schema, row_group: int = 4096):
        self.path = path
        self._cm = atomic_output(path)
        self._tmp = self._cm.__enter__()
        self.schema, self.row_group = schema, row_group
        self._writer = pq.ParquetWriter(self._tmp, schema)
        self._rows: list[dict] = []
        self.n = 0

    def add(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.row_group:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self.n += len(self._rows)
            self._rows = []

    def close(self, items: int) -> None:
        self.flush()
        self._writer.close()
        record = {"rows": self.n, "items": items, "sha256": file_checksum(self._tmp)}
        self._cm.__exit__(None, None, None)
        write_text_atomic(self.path.with_suffix(".json"), json.dumps(record))

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._cm.__exit__(RuntimeError, RuntimeError("aborted"), None)


def run_chunks(store: PartStore, items: Iterable[T], chunk_size: int, process: Callable[[list[T]], Iterable[dict]],
               schema: pa.Schema, *, max_weight: int | None = None, weight: Callable[[T], int] | None = None,
               row_group: int = 4096, progress: bool = True, desc: str = "", unit: str = "item", total: int | None = None) -> int:
    """The chunk loop of every job: cut ``items`` into chunks, ``process`` this shard's unfinished
    ones into rows, stream them to their part, record the chunk and item counts. Returns the
    chunk count."""

    n = n_items = 0
    desc = f"{desc} (shard {store.shard})" if store.shard.count > 1 else desc
    try:
        with progress_bar(total=total, unit=unit, desc=desc, enabled=progress) as bar:
            for c, chunk in enumerate(chunks(items, chunk_size, weight, max_weight)):
                n, n_items = c + 1, n_items + len(chunk)
                if store.todo(c):
                    w = PartWriter(store.part(c), schema, row_group)
                    try:
                        for row in process(chunk):
                            w.add(row)
                    except BaseException:
                        w.abort()
                        raise
                    w.close(len(chunk))
                bar.update(len(chunk))
    except BaseException:
        if not any(store.dir.glob("part-*.parquet")):  # nothing to resume: leave no trace
            store.remove()
        raise
    store.set_total(n, n_items)
    return n


def finish(store: PartStore, merge: Callable[[PartStore], dict], *, wait: bool = True) -> dict:
    """Join the parts into the outputs (``merge(store)``) when every chunk is done: one process,
    holding the lock, verifies the parts (``PartStore.verify``), merges, checks that every output
    was written, leaves a receipt and removes the parts. The others return ``merged: False`` and
    what is still awaited (``wait=False``: an error instead, for ``ntkit merge``)."""
    if not store.complete():
        missing = store.missing()
        waiting = f"{len(missing)} chunk(s): {missing[:10]}" if missing is not None else "the end of the input"
        if not wait:
            raise ValueError(f"{store.dir}: not every chunk is done yet (waiting for {waiting}); run the missing shards first")
        return {"merged": False, "waiting_for": waiting}
    outputs = store.outputs
    with store.merge_lock() as held:
        if not held:
            if not wait:
                raise ValueError(f"{store.dir}: another process is merging")
            return {"merged": False, "waiting_for": "another process merging"}
        rows = store.verify()
        result = _normal(merge(store))
        written = [Path(o) for o in result.get("outputs", [])]
        absent = [o for o in outputs if not o.exists()] + [o for o in written if not o.exists() or o.resolve().parent != outputs[0].resolve().parent]
        if absent:  # the parts stay: nothing is lost
            raise ValueError(f"merge of {store.dir} did not write {absent[0]}; the parts are kept")
        result["rows"] = rows
        write_text_atomic(receipt_path(outputs[0]), json.dumps({"manifest": store.manifest, "result": result}, indent=2))
        store.remove()
    return {"merged": True, **result}


@dataclass
class Job:
    """A sharded, resumable job: ``items`` (read lazily, in input order) cut into chunks,
    ``process(chunk) -> rows`` (dicts of ``schema``), ``merge(store) -> {outputs, summary, ...}``
    writing the final ``outputs`` from the verified parts. What makes a result what it is goes in
    the manifest: ``input_files`` (checksummed), ``fingerprints`` (e.g. a genome's), ``options``
    and the ``model``'s fingerprint."""

    name: str
    outputs: Sequence[str | os.PathLike]
    items: Iterable
    process: Callable[[list], Iterable[dict]]
    schema: pa.Schema
    merge: Callable[[PartStore], dict]
    input_files: dict[str, str | os.PathLike] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    model: Any = None
    chunk_size: int = 4096
    weight: Callable | None = None
    max_weight: int | None = None
    row_group: int = 4096
    unit: str = "item"
    desc: str = ""
    total: int | None = None
    rows_per_item: int | None = None  # rows each input item gives, where fixed (embed: 1): checked at merge


def prepare_outputs(outputs: Sequence[str | os.PathLike], inputs: Iterable[str | os.PathLike | None] = ()) -> list[Path]:
    """The outputs of one job, checked before any compute (``check_output``): one folder for all
    (the merge writes nowhere else), temporary files of dead writers swept from it."""
    outs = [Path(o) for o in outputs]
    if not outs:
        raise ValueError("no output given")
    for o in outs:
        check_output(o, [i for i in inputs if i is not None])
    folders = {o.resolve().parent for o in outs}
    if len(folders) > 1:
        raise ValueError(f"the outputs of one job go into one folder (got {', '.join(sorted(map(str, folders)))})")
    sweep_temporaries(folders.pop())
    return outs


def run_job(job: Job, *, shard=None, restart: bool = False, progress: bool = True) -> dict:
    """Run this shard's chunks of ``job`` and merge when they are all done (module docstring).
    Returns ``shard``, ``chunks``, ``merged`` and the merge's summary; ``already_done`` when an
    identical job had finished (nothing recomputed)."""
    outputs = prepare_outputs(job.outputs, job.input_files.values())
    shard = shard if isinstance(shard, Shard) else Shard.parse(shard)
    manifest = {"job": job.name, "outputs": [o.name for o in outputs], "about": provenance(job.model),
                "inputs": {**{k: file_checksum(v) for k, v in job.input_files.items()}, **job.fingerprints},
                "chunk_size": job.chunk_size, "options": job.options,
                **({"rows_per_item": job.rows_per_item} if job.rows_per_item is not None else {}),
                "model": model_fingerprint(job.model) if job.model is not None else None}
    store = PartStore(outputs[0], manifest, shard, restart)
    if store.finished is not None:
        return {"shard": str(shard), "merged": True, "already_done": True, **store.finished}
    store.schema = job.schema
    n = run_chunks(store, job.items, job.chunk_size, job.process, job.schema, max_weight=job.max_weight, weight=job.weight,
                   row_group=job.row_group, progress=progress, desc=job.desc, unit=job.unit, total=job.total)
    if not shard.merge:
        return {"shard": str(shard), "chunks": n, "parts": str(store.dir), "merged": False,
                "waiting_for": "`ntkit merge` (--no-merge)"}
    return {"shard": str(shard), "chunks": n, "parts": str(store.dir), **finish(store, job.merge)}


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
            b.to_pandas(integer_object_nulls=True).to_csv(f, sep=sep, index=False, header=header, na_rep="NA")  # ints stay ints
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
