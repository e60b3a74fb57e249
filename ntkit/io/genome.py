"""Reference genomes: random access to FASTA files and contig-name resolution.

bgzip-compressed or plain FASTA is read through ``pysam.FastaFile`` (an index is built when
missing and the folder is writable). A plain-gzip FASTA cannot be indexed; it is read once into
memory (with a warning suggesting ``bgzip``) and served through the same interface.
Coordinates are 0-based, half-open; sequences come back upper-cased.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pysam

from ntkit.io.shipped import SHIPPED


def contig_aliases(name: str) -> list[str]:
    """``chr20`` <-> ``20``, ``chrM`` <-> ``MT``."""
    bare = name[3:] if name.lower().startswith("chr") else name
    out = [name, bare, "chr" + bare]
    if bare in ("M", "MT"):
        out += ["MT", "chrM", "M", "chrMT"]
    return list(dict.fromkeys(out))


def _is_plain_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(18)
    # BGZF blocks carry the 'BC' extra subfield; plain gzip does not.
    return head[:2] == b"\x1f\x8b" and not (len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC")


_VCF_COPIES: dict[str, str] = {}


def vcf_path(path: str | os.PathLike) -> str:
    """A path pysam can read: a plain-gzip VCF (which htslib cannot seek) is decompressed once to
    a temporary file, with a warning suggesting ``bgzip`` + ``tabix``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"VCF not found: {path}")
    if not _is_plain_gzip(path):
        return str(path)
    key = str(path.resolve())
    if key not in _VCF_COPIES or not os.path.exists(_VCF_COPIES[key]):
        import atexit
        import shutil
        import tempfile

        warnings.warn(f"{path} is plain gzip, not bgzip: reading a decompressed copy (bgzip + tabix it for random access)", stacklevel=2)
        fd, tmp = tempfile.mkstemp(suffix=".vcf", prefix="ntkit-")
        try:
            with gzip.open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as e:
            os.remove(tmp)
            raise ValueError(f"{path}: {e} (a truncated or corrupt gzip file: download it again)") from None
        atexit.register(lambda p=tmp: os.path.exists(p) and os.remove(p))
        _VCF_COPIES[key] = tmp
    return _VCF_COPIES[key]


def open_vcf(path: str | os.PathLike):
    """``pysam.VariantFile`` of ``vcf_path(path)``, without htslib's stderr note that an
    unindexed file has no index (streaming reads need none; ``fetch`` raises when it is missing)."""
    prev = pysam.set_verbosity(0)
    try:
        return pysam.VariantFile(vcf_path(path))
    finally:
        pysam.set_verbosity(prev)


class Genome:
    """A FASTA reference: ``genome.fetch("chr20", 0, 100)``, ``genome.lengths``, ``genome.resolve("20")``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            hint = (" (the data shipped with ntkit holds GRCh37 chr20 stretches only: `ntkit data fetch demo --dest DIR`, "
                    "then NTKIT_DATA=DIR)" if SHIPPED.resolve() in self.path.resolve().parents else "")
            raise FileNotFoundError(f"FASTA not found: {self.path}{hint}")
        self._fasta: pysam.FastaFile | None = None
        self._seqs: dict[str, str] | None = None
        if _is_plain_gzip(self.path):
            warnings.warn(
                f"{self.path} is plain gzip, not bgzip: reading it into memory "
                "(run `zcat X.fa.gz | bgzip > X.fa.bgz && samtools faidx X.fa.bgz` for random access)",
                stacklevel=2,
            )
            self._seqs = {}
            with pysam.FastxFile(str(self.path)) as fh:
                for rec in fh:
                    self._seqs[rec.name] = rec.sequence.upper()
            self.lengths = {k: len(v) for k, v in self._seqs.items()}
        else:
            try:
                self._fasta = pysam.FastaFile(str(self.path))
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot open FASTA {self.path}: {e}") from e
            self.lengths = dict(zip(self._fasta.references, self._fasta.lengths))
        self.contigs = list(self.lengths)

    def resolve(self, name: str) -> str:
        """The contig name used in this FASTA for ``name`` (``chr20`` and ``20`` both work)."""
        for alias in contig_aliases(name):
            if alias in self.lengths:
                return alias
        raise KeyError(f"contig {name!r} not in {self.path.name} (has {', '.join(self.contigs[:10])}{'...' if len(self.contigs) > 10 else ''})")

    def has(self, name: str) -> bool:
        return any(a in self.lengths for a in contig_aliases(name))

    def check_disjoint(self, sets: dict[str, list[str]]) -> None:
        """Contig sets (``{"--train-contigs": [...], "--valid-contigs": [...]}``) must not share a
        contig (``chr20`` and ``20`` are the same one): validation on training data reads as a
        result and is none."""
        seen: dict[str, str] = {}
        for option, contigs in sets.items():
            for c in contigs or ():
                name = self.resolve(c)
                if seen.get(name, option) != option:
                    raise ValueError(f"contig {c} is in both {seen[name]} and {option}: held-out contigs must not be trained on")
                seen[name] = option

    def length(self, name: str) -> int:
        return self.lengths[self.resolve(name)]

    def fetch(self, contig: str, start: int = 0, end: int | None = None) -> str:
        name = self.resolve(contig)
        n = self.lengths[name]
        end = n if end is None else end
        if not 0 <= start <= end <= n:
            raise ValueError(f"interval {contig}:{start}-{end} outside contig of length {n}")
        if self._seqs is not None:
            return self._seqs[name][start:end]
        return self._fasta.fetch(name, start, end).upper()

    def fetch_padded(self, contig: str, start: int, end: int) -> str:
        """Bases [start, end) of a window that may start before the contig or end after it: N
        there (a window at a telomere, a model's flanks at a contig's ends)."""
        n = self.lengths[self.resolve(contig)]
        a = min(max(start, 0), n)
        b = max(min(end, n), a)
        # N for the positions of [start, end) below 0 and from n on
        return "N" * max(0, min(end, 0) - start) + self.fetch(contig, a, b) + "N" * max(0, end - max(start, n))

    def close(self) -> None:
        if self._fasta is not None:
            self._fasta.close()

    def __enter__(self) -> "Genome":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):  # picklable for DataLoader workers: reopen the file handle there
        state = self.__dict__.copy()
        state["_fasta"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._seqs is None:
            self._fasta = pysam.FastaFile(str(self.path))


def iter_fasta(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """(name, sequence) per record of a (possibly gzipped) FASTA, read lazily, sequences as written
    (the name is the header up to the first whitespace). Checked as it is read, because C readers
    stop a sequence silently at a NUL byte: text before the first ``>``, a NUL byte or a file
    without records is an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"FASTA not found: {path}")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    name, parts, n = None, [], 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            for lineno, raw in enumerate(fh, 1):
                if b"\x00" in raw:
                    raise ValueError(f"{path}:{lineno}: NUL byte in the file (a corrupt or binary file?)")
                line = raw.rstrip(b"\r\n")
                if line.startswith(b">"):
                    if name is not None:
                        yield name, "".join(parts)
                        n += 1
                    name, parts = line[1:].decode(errors="replace").split(maxsplit=1)[0] if line[1:].strip() else "", []
                elif name is None:
                    if line.strip():
                        raise ValueError(f"{path}:{lineno}: not FASTA (text before the first '>' header line)")
                else:
                    parts.append(line.decode("ascii", errors="strict").strip())
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: non-ASCII bytes in a sequence ({e.reason})") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: {e} (a truncated or corrupt file)") from None
    if name is not None:
        yield name, "".join(parts)
        n += 1
    if n == 0:
        raise ValueError(f"{path}: no FASTA records (empty file, or no '>' header line)")


def read_fasta_records(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(name, sequence) for every record of a (possibly gzipped) FASTA, sequences as written."""
    return list(iter_fasta(path))


def write_fasta(path: str | os.PathLike, records, width: int = 60) -> None:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as f:
        for name, seq in records:
            f.write(f">{name}\n")
            for i in range(0, len(seq), width):
                f.write(seq[i : i + width] + "\n")


@dataclass(frozen=True)
class Interval:
    contig: str
    start: int  # 0-based
    end: int  # exclusive
    name: str | None = field(default=None, compare=False)  # a BED name, or the region as the user wrote it (not its identity)

    @property
    def label(self) -> str:
        return self.name or f"{self.contig}:{self.start + 1}-{self.end}"

    @classmethod
    def parse(cls, text: str, genome: Genome | None = None) -> "Interval":
        """``20:1,000-2,000`` (1-based inclusive) or ``chr20`` (whole contig; needs the genome)."""
        m = re.fullmatch(r"([^:]+):([\d,]+)-([\d,]+)", text.strip())
        if m:
            start, end = int(m.group(2).replace(",", "")), int(m.group(3).replace(",", ""))
            if start < 1 or end < start:
                raise ValueError(f"bad interval {text!r}")
            return cls(m.group(1), start - 1, end, text.strip())
        if genome is None:
            raise ValueError(f"whole-contig region {text!r} needs a genome to know its length")
        return cls(text.strip(), 0, genome.length(text.strip()), text.strip())

    def overlaps(self, contig: str, start: int, end: int) -> bool:
        return contig in contig_aliases(self.contig) and start < self.end and self.start < end
