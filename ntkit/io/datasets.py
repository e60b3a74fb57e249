"""Where data lives: the demo data shipped with ntkit, ``$NTKIT_DATA``, and the public files that
``ntkit data fetch`` downloads from the catalogue (``ntkit/catalogue.yaml``).

``data_dir()`` is the data folder every default uses: an explicit folder, else ``$NTKIT_DATA``,
else the demo data inside the package (``ntkit/demo_data``: a real GRCh37 chr20 subset at its true
coordinates, see its README). Recipes name files relative to it (``${NTKIT_DATA}/genomes/...``).

Fetching (``fetch``): each file is downloaded to ``<dest>.part`` beside its destination, resumed
from there after an interruption (HTTP ``Range``; ``file://`` seeks), checked against the
catalogue (sha256 and size pinned there; the publisher's md5 list; the sha256 the server declares;
or at least the size it announces), and only then renamed into place; a file from an archive
(a Debian package, a wheel) is extracted and checked in turn. A corrupt download is deleted and
refused; nothing half-written is ever at a destination. ``mirror`` replaces every URL
``scheme://host/path`` by ``<mirror>/host/path`` (a local folder or a URL), for air-gapped sites
and for the tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import itertools
import os
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import yaml

from ntkit.io.genome import _is_plain_gzip
from ntkit.io.shipped import CATALOGUE, SHIPPED, data_dir, data_file  # noqa: F401  (data_dir, data_file: ntkit.io.datasets' API too)
from ntkit.runtime.jobs import atomic_output, write_text_atomic
from ntkit.runtime.progress import bar as progress_bar

DOWNLOADS = ".ntkit-downloads"  # archives kept here between an interruption and the next run
CHUNK = 1 << 20


# -- catalogue ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    dest: str  # relative to the destination folder
    urls: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None
    member: str | None = None  # a file inside the download (.deb or .whl/.zip)
    member_size: int | None = None
    member_sha256: str | None = None
    md5_list: str | None = None  # URL of the publisher's "md5  name" list
    sha256_header: bool = False  # the server declares the sha256 (Hugging Face X-Linked-Etag)
    bgzip: bool = False  # plain-gzip FASTA -> bgzip + faidx once verified
    index: str | None = None  # "faidx" / "tabix": build the index once placed
    group: str | None = None
    source: str = ""
    licence: str = ""

    @property
    def verification(self) -> str:
        if self.sha256 and (self.member is None or self.member_sha256):
            return "pinned sha256"
        if self.md5_list:
            return "publisher md5 list"
        if self.sha256_header:
            return "server-declared sha256"
        return "size only (sha256 recorded)"


_REQUIRED = {"name": str, "description": str, "dest": str, "urls": list}
_TYPES = {"size": int, "member_size": int, "sha256": str, "member": str, "member_sha256": str, "md5_list": str,
          "sha256_header": bool, "bgzip": bool, "index": str, "group": str, "source": str, "licence": str}


def _check_entry(path, k: int, e: dict) -> None:
    """One catalogue entry, field by field (a hand-edited or foreign catalogue is checked as recipes
    are): required fields present, types right, and ``dest`` a relative path inside the destination
    folder (no ``..``, not absolute), so that no entry can write anywhere else."""
    where = f"{path}: entry {e.get('name', k + 1)!r}"
    for key, t in _REQUIRED.items():
        if key not in e:
            raise ValueError(f"{where}: missing field {key!r} (every entry has {', '.join(_REQUIRED)})")
    for key, t in {**_REQUIRED, **_TYPES}.items():
        v = e.get(key)
        if v is not None and not (isinstance(v, t) and not (t is int and isinstance(v, bool))):
            raise ValueError(f"{where}: field {key!r} is {v!r}, expected {t.__name__}")
    if not e["urls"] or not all(isinstance(u, str) for u in e["urls"]):
        raise ValueError(f"{where}: field 'urls' must be a non-empty list of URLs")
    dest = e["dest"].replace("\\", "/")
    if not dest or dest.startswith("/") or Path(dest).is_absolute() or ".." in dest.split("/") or ":" in dest.split("/")[0]:
        raise ValueError(f"{where}: dest {e['dest']!r} must be a relative path inside --dest (no '..', not absolute)")


@dataclass
class Catalogue:
    entries: dict[str, Entry]
    groups: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike = CATALOGUE) -> "Catalogue":
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
        entries: dict[str, Entry] = {}
        groups = {k: list(v) for k, v in (raw.get("groups") or {}).items()}
        known = set(Entry.__dataclass_fields__)
        if not isinstance(raw, dict) or not isinstance(raw.get("entries") or [], list) or not isinstance(raw.get("groups") or {}, dict):
            raise ValueError(f"{path}: not a data catalogue (a mapping with 'entries', a list, and 'groups')")
        for k, e in enumerate(raw.get("entries") or []):
            if not isinstance(e, dict):
                raise ValueError(f"{path}: entry {k + 1} is not a mapping of fields")
            e = dict(e)
            expand = e.pop("expand", None) or {}
            unknown = set(e) - known
            if unknown:
                raise ValueError(f"{path}: entry {e.get('name')!r} has unknown keys {sorted(unknown)}")
            _check_entry(path, k, e)
            keys = list(expand)
            for values in itertools.product(*(expand[k] for k in keys)) if keys else [()]:
                sub = dict(zip(keys, map(str, values)))
                fill = lambda v: v.format(**sub) if keys and isinstance(v, str) else v  # noqa: E731
                entry = Entry(**{k: (tuple(fill(u) for u in v) if k == "urls" else fill(v)) for k, v in e.items()})
                if entry.name in entries:
                    raise ValueError(f"{path}: entry {entry.name!r} twice")
                entries[entry.name] = entry
                if entry.group:
                    groups.setdefault(entry.group, []).append(entry.name)
        return cls(entries, groups)

    def resolve(self, names: Sequence[str]) -> list[Entry]:
        """Entries for names of entries or groups (groups may name groups), in order, once each."""
        out: dict[str, Entry] = {}

        def add(name: str, seen: tuple = ()) -> None:
            if name in self.entries:
                out.setdefault(name, self.entries[name])
            elif name in self.groups and name not in seen:
                for n in self.groups[name]:
                    add(n, seen + (name,))
            else:
                raise ValueError(f"unknown data name {name!r} (`ntkit data fetch --list` shows the catalogue)")

        for n in names:
            add(n)
        return list(out.values())

    def table(self) -> str:
        """The catalogue as text: groups, then one line per entry (one per expanded group)."""
        lines = ["groups:"] + [f"  {g:<20} {len(self.resolve([g])):>3} files" for g in sorted(self.groups)] + [""]
        rows, shown = [], set()
        for e in self.entries.values():
            if e.group in shown:
                continue
            name, dest = e.name, e.dest
            if e.group:  # an expanded template: one line for the whole group
                names = self.groups[e.group]
                shown.add(e.group)
                dest = os.path.commonpath([self.entries[n].dest for n in names]) + "/..."
                name = f"{names[0]} .. {names[-1]} ({e.group})"
            size = e.member_size or e.size
            rows.append((name, _human(size) if size else "size ?", e.verification, dest))
        w = max(len(r[0]) for r in rows)
        return "\n".join(lines + [f"{n:<{w}}  {s:>9}  {v:<27}  {d}" for n, s, v, d in rows])


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


# -- transfers ---------------------------------------------------------------------------------------------


def mirrored(url: str, mirror: str | None) -> str:
    """``scheme://host/path`` -> ``<mirror>/host/path`` (a folder becomes a file:// URL)."""
    if not mirror:
        return url
    u = urllib.parse.urlsplit(url)
    base = mirror if "://" in mirror else Path(mirror).resolve().as_uri()
    return base.rstrip("/") + "/" + u.netloc + u.path


class _Headers(urllib.request.HTTPRedirectHandler):
    """Collects the headers of every hop (Hugging Face declares sha256 and size on the redirect)."""

    def __init__(self):
        self.seen: dict[str, str] = {}

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.seen.update({k.lower(): v for k, v in headers.items()})
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, offset: int = 0, timeout: float = 60.0):
    """(response, resumed?, headers of all hops) for ``url`` from byte ``offset``."""
    if url.startswith("file://"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        f = open(path, "rb")
        size = path.stat().st_size
        if offset and offset <= size:
            f.seek(offset)
            return f, True, {"content-length": str(size - offset), "x-total-size": str(size)}
        return f, False, {"content-length": str(size), "x-total-size": str(size)}
    hops = _Headers()
    opener = urllib.request.build_opener(hops)
    req = urllib.request.Request(url, headers={"User-Agent": "ntkit-data-fetch", **({"Range": f"bytes={offset}-"} if offset else {})})
    try:
        r = opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the part is already complete
            return None, True, {**hops.seen, **{k.lower(): v for k, v in e.headers.items()}}
        raise
    headers = {**hops.seen, **{k.lower(): v for k, v in r.headers.items()}}
    resumed = offset > 0 and r.status == 206
    if resumed and "content-range" in headers:
        headers["x-total-size"] = headers["content-range"].rsplit("/", 1)[-1]
    elif "content-length" in headers:
        headers["x-total-size"] = headers["content-length"]
    return r, resumed, headers


def _sha256(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while b := f.read(CHUNK):
            h.update(b)
    return h.hexdigest()


def _interrupted(what: str, part: Path, total: int | None, why) -> ConnectionError:
    """A transfer cut short is not a corrupt file: the part stays for the next run to resume."""
    got = part.stat().st_size if part.exists() else 0
    return ConnectionError(f"download of {what} interrupted at {got:,}{f' of {total:,}' if total else ''} bytes ({why}); "
                           f"{part} is kept: run the fetch again to resume it")


def download(urls: Sequence[str], dest: Path, *, size: int | None = None, progress: bool = True, label: str = "") -> dict:
    """``dest`` from the first URL that answers, via ``dest.part`` (resumed when present). Returns
    the headers of the answering server. Raises ConnectionError naming every URL tried, or, when a
    transfer breaks off, saying that the part is kept for the next run to resume."""

    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        have = part.stat().st_size if part.exists() else 0
        try:
            r, resumed, headers = _open(url, have)
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url} ({getattr(e, 'reason', None) or e})")
            continue
        total = int(headers["x-total-size"]) if headers.get("x-total-size", "").isdigit() else size
        if r is None:  # 416: nothing left to send
            return headers
        try:
            with r, open(part, "ab" if resumed else "wb") as out, \
                    progress_bar(total=total, initial=have if resumed else 0, unit="B", unit_scale=True, unit_divisor=1024,
                                 desc=label or dest.name, enabled=progress) as bar:
                while b := r.read1(CHUNK):  # what has arrived (read() would wait for a whole CHUNK)
                    out.write(b)
                    bar.update(len(b))
        except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
            raise _interrupted(label or dest.name, part, total, e) from None
        if total is not None and part.stat().st_size < total:  # the server closed the connection early
            raise _interrupted(label or dest.name, part, total, "connection closed")
        return headers
    raise ConnectionError(f"could not download {label or dest.name}: tried {'; '.join(errors)} "
                          "(offline? use --mirror DIR_OR_URL, or copy the file into place)")


# -- archives ----------------------------------------------------------------------------------------------


def _deb_data(path: Path) -> tarfile.TarFile:
    """The data.tar of a Debian package (an ``ar`` archive)."""
    f = open(path, "rb")
    if f.read(8) != b"!<arch>\n":
        raise ValueError(f"{path}: not a Debian package")
    while len(h := f.read(60)) == 60:
        name, n = h[:16].decode().strip().rstrip("/"), int(h[48:58])
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raise ValueError(f"{path}: zstd-compressed package data is not supported")
            return tarfile.open(fileobj=_Slice(f, f.tell(), n), mode="r|*")  # a stream: members in order
        f.seek(n + (n % 2), 1)
    raise ValueError(f"{path}: no data.tar member")


class _Slice:
    """A read-only window [start, start + n) of an open file, for tarfile."""

    def __init__(self, f, start: int, n: int):
        self.f, self.start, self.n, self.pos = f, start, n, 0

    def read(self, k: int = -1) -> bytes:
        k = self.n - self.pos if k < 0 else min(k, self.n - self.pos)
        self.f.seek(self.start + self.pos)
        b = self.f.read(k)
        self.pos += len(b)
        return b


@contextlib.contextmanager
def _member(archive: Path, member: str) -> Iterator:
    """A file object for ``member`` of a .deb or a zip/wheel."""
    if archive.name.endswith(".deb"):
        with _deb_data(archive) as t:
            for m in t:
                if m.isfile() and m.name.lstrip("./") == member.lstrip("./"):
                    with t.extractfile(m) as f:
                        yield f
                    return
    else:
        with zipfile.ZipFile(archive) as z, z.open(member) as f:
            yield f
            return
    raise ValueError(f"{archive.name}: no member {member}")


# -- fetch -------------------------------------------------------------------------------------------------


def _check(path: Path, what: str, size: int | None, sha256: str | None = None, md5: str | None = None) -> str:
    """sha256 of ``path`` after checking its size and checksum; a mismatch deletes it."""
    problems = []
    got_size = path.stat().st_size
    if size is not None and got_size != size:
        problems.append(f"{got_size:,} bytes, expected {size:,}")
    digest = _sha256(path)
    if sha256 and digest != sha256:
        problems.append(f"sha256 {digest[:16]}..., expected {sha256[:16]}...")
    if md5 and _sha256(path, "md5") != md5:
        problems.append(f"md5 differs from the publisher's {md5}")
    if problems:
        path.unlink(missing_ok=True)
        raise ValueError(f"{what}: the download is corrupt or the file changed upstream ({'; '.join(problems)}); "
                         "it was deleted and nothing was placed: run the fetch again")
    return digest


def _publisher_md5(entry: Entry, mirror: str | None, workdir: Path) -> str:
    """The md5 the publisher lists for this entry's file name."""
    listing = workdir / (hashlib.sha1(entry.md5_list.encode()).hexdigest()[:12] + ".md5")
    if not listing.exists():
        download([mirrored(entry.md5_list, mirror)], listing, progress=False, label=f"{entry.name} (md5 list)")
        listing.with_name(listing.name + ".part").replace(listing)
    fname = urllib.parse.unquote(urllib.parse.urlsplit(entry.urls[0]).path.rsplit("/", 1)[-1])
    for line in listing.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1].lstrip("*./") == fname:
            return parts[0].lower()
    raise ValueError(f"{entry.name}: {fname} is not in the publisher's md5 list {entry.md5_list}")


def _postprocess(entry: Entry, path: Path) -> None:
    import pysam

    if entry.bgzip:  # plain gzip -> BGZF, so that pysam/samtools read windows at random
        import gzip

        if _is_plain_gzip(path):
            tmp = path.with_name(path.name + ".bgzf")
            with gzip.open(path, "rb") as src, pysam.BGZFile(str(tmp), "wb") as dst:
                while b := src.read(CHUNK):
                    dst.write(b)
            os.replace(tmp, path)
    if entry.bgzip or entry.index == "faidx":
        pysam.faidx(str(path))
    elif entry.index == "tabix" and not Path(str(path) + ".tbi").exists():
        pysam.tabix_index(str(path), preset="vcf", force=True, keep_original=True)


def _record(dest_root: Path, rel: str, digest: str) -> None:
    """``<dest>/SHA256SUMS``: one line per fetched file (rewritten atomically)."""
    path = dest_root / "SHA256SUMS"
    lines = dict(reversed(line.split("  ", 1)) for line in path.read_text().splitlines() if "  " in line) if path.exists() else {}
    lines[rel] = digest
    write_text_atomic(path, "".join(f"{d}  {r}\n" for r, d in sorted(lines.items())))


def fetch(names: Sequence[str], dest: str | os.PathLike, *, mirror: str | None = None, force: bool = False,
          progress: bool = True, catalogue: Catalogue | None = None, log=print) -> list[dict]:
    """Download the named entries / groups into ``dest`` (see the module docstring). Returns one
    record per entry: name, path, status (``fetched`` / ``present``), sha256, verification."""
    cat = catalogue or Catalogue.load()
    entries = cat.resolve(names)
    root = Path(dest)
    work = root / DOWNLOADS
    results, archives = [], set()
    for e in entries:
        target = root / e.dest
        if not target.resolve().is_relative_to(root.resolve()):  # also through a symlink inside dest
            raise ValueError(f"{e.name}: dest {e.dest!r} leads outside {root} ({target.resolve()}): catalogue paths stay inside --dest")
        if target.exists() and not force:
            digest = _sha256(target)
            want = e.member_sha256 if e.member else e.sha256
            if want is None or want == digest or e.bgzip:  # a recompressed file no longer has the published checksum
                results.append({"name": e.name, "path": str(target), "status": "present", "sha256": digest, "verification": e.verification})
                continue
            raise ValueError(f"{target} exists and differs from the catalogue's {e.name} (sha256 {digest[:16]}..., expected "
                             f"{want[:16]}...): it is not replaced; --force fetches the catalogue's file over it")
        urls = [mirrored(u, mirror) for u in e.urls] if mirror else list(e.urls)
        if e.member:  # an archive: download (or reuse) it, check it, extract the member, check that
            archive = work / urllib.parse.unquote(urllib.parse.urlsplit(e.urls[0]).path.rsplit("/", 1)[-1])
            if not (archive.exists() and e.sha256 and _sha256(archive) == e.sha256):
                download(urls, archive, size=e.size, progress=progress, label=archive.name)
                part = archive.with_name(archive.name + ".part")
                _check(part, f"{e.name} ({archive.name})", e.size, e.sha256)
                os.replace(part, archive)
            archives.add(archive)

            with atomic_output(target) as tmp:
                with _member(archive, e.member) as src, open(tmp, "wb") as out:
                    while b := src.read(CHUNK):
                        out.write(b)
                digest = _check(tmp, e.name, e.member_size, e.member_sha256)
        else:
            headers = download(urls, target, size=e.size, progress=progress, label=e.name)
            part = target.with_name(target.name + ".part")
            declared = headers.get("x-linked-etag", "").strip('"').lower() if e.sha256_header else ""
            if e.sha256_header and len(declared) != 64:
                part.unlink(missing_ok=True)
                raise ValueError(f"{e.name}: the server declared no sha256 (X-Linked-Etag) to check the download against")
            size = e.size or (int(headers["x-total-size"]) if headers.get("x-total-size", "").isdigit() else None)
            md5 = _publisher_md5(e, mirror, work) if e.md5_list else None
            digest = _check(part, e.name, size, e.sha256 or declared or None, md5)
            os.replace(part, target)
        _postprocess(e, target)
        _record(root, e.dest, digest)
        results.append({"name": e.name, "path": str(target), "status": "fetched", "sha256": digest, "verification": e.verification})
        log(f"{e.name}: {target} ({e.verification})")
    for a in archives:  # every member wanted from them is placed
        a.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        for f in work.glob("*.md5"):
            f.unlink()
        work.rmdir()
    return results

