"""Data folders and ``ntkit data fetch``: the shipped demo data, the catalogue, and downloads from a
local mirror (file:// and a localhost HTTP server with Range support), never the internet."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from ntkit.io import datasets
from ntkit.cli import main
from ntkit.io.datasets import Catalogue, SHIPPED, data_dir, data_file, fetch

ROOT = Path(__file__).resolve().parents[1]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# -- the shipped demo data ---------------------------------------------------------------------------------


def test_data_dir_defaults_to_the_shipped_demo_data(monkeypatch, tmp_path):
    monkeypatch.delenv("NTKIT_DATA", raising=False)
    assert data_dir() == SHIPPED and data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("NTKIT_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    assert data_file(SHIPPED, "tasks/nt_downstream_revised_subsample.tsv").name.endswith(".tsv.gz")  # the gzipped twin
    with pytest.raises(FileNotFoundError, match="ntkit data fetch"):
        data_file(tmp_path, "genomes/GRCh37_chr20.fa.gz")


def test_shipped_data_is_small_checksummed_and_at_real_coordinates():
    import pysam

    from ntkit.io.genome import Genome

    files = [p for p in SHIPPED.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5e6
    sums = dict(reversed(line.split("  ", 1)) for line in (SHIPPED / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {p.relative_to(SHIPPED).as_posix() for p in files} - {"SHA256SUMS"}
    for rel, digest in sums.items():
        assert sha((SHIPPED / rel).read_bytes()) == digest, rel
    g = Genome(SHIPPED / "genomes/GRCh37_chr20.fa.gz")
    assert g.lengths == {"20": 63_025_520}  # the whole contig: positions are the published ones
    assert g.fetch("20", 59_990, 60_010) == "N" * 10 + "GATCCAGAGG"  # the telomeric N block ends at 60,000
    assert g.fetch("20", 36_000_000, 36_000_010) == "N" * 10  # outside the shipped stretches
    # every shipped variant's REF matches the shipped reference (bgzip + tabix: no warnings, random access)
    n = 0
    for name in ("chr20_indels_1000G.vcf.gz", "chr20_gonl_sites.vcf.gz"):
        vf = pysam.VariantFile(str(SHIPPED / "variants" / name))
        assert vf.index is not None
        for rec in vf:
            assert g.fetch("20", rec.start, rec.stop) == rec.ref
            n += 1
    assert n == 25  # 18 indels + 7 SNV sites
    readme = (SHIPPED / "README.md").read_text()
    assert "20:30,000,001-36,000,000" in readme and "licence" in readme


def test_build_script_regenerates_the_shipped_data(shared_data, tmp_path):
    """The package data is what scripts/build_demo_data.py makes from the full files."""
    out = tmp_path / "demo_data"
    subprocess.run([sys.executable, str(ROOT / "scripts/build_demo_data.py"), "--src", str(shared_data), "--out", str(out)],
                   check=True, capture_output=True)
    for rel in ("genomes/GRCh37_chr20.fa.gz", "variants/chr20_indels_1000G.vcf.gz", "variants/chr20_gonl_sites.vcf.gz",
                "tasks/nt_downstream_revised_subsample.tsv.gz", "tasks/human_enhancers_cohn_train.tsv.gz",
                "tasks/human_enhancers_cohn_test.tsv.gz"):
        with gzip.open(out / rel) as a, gzip.open(SHIPPED / rel) as b:  # same content (compression may differ across htslib versions)
            assert a.read() == b.read(), rel
    for rel in ("splice/spliceai_canonical_dataset_hg19.txt", "splice/spliceai_annotation_grch37.txt", "README.md",
                "examples/seqs.fa", "examples/regions.bed"):
        assert (out / rel).read_bytes() == (SHIPPED / rel).read_bytes(), rel


def test_wheel_ships_the_data_and_stays_small(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("ntkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ntkit/catalogue.yaml" in names and "ntkit/demo_data/genomes/GRCh37_chr20.fa.gz.gzi" in names
    assert "ntkit/demo_data/tasks/human_enhancers_cohn_train.tsv.gz" in names and "ntkit/demo_data/SHA256SUMS" in names
    assert "ntkit/demo_data/examples/regions.bed" in names
    assert wheel.stat().st_size < 20e6


# -- the catalogue -----------------------------------------------------------------------------------------


def test_catalogue_entries_groups_and_pins(shared_data):
    cat = Catalogue.load()
    dests = [e.dest for e in cat.entries.values()]
    assert len(dests) == len(set(dests))
    demo = cat.resolve(["demo"])
    assert len(demo) == 11 and all(e.verification == "pinned sha256" for e in demo)
    assert len(cat.resolve(["nt-tasks-revised"])) == 36 and len(cat.resolve(["hg38-chromosomes"])) == 24
    assert cat.entries["hg38-chr20"].urls == ("https://hgdownload.soe.ucsc.edu/goldenPath/hg38/chromosomes/chr20.fa.gz",)
    for e in cat.entries.values():
        for digest in (e.sha256, e.member_sha256):
            assert digest is None or (len(digest) == 64 and int(digest, 16) >= 0)
    # the pins are the files of the shared data folder, byte for byte
    checked = 0
    for e in demo:
        if (shared_data / e.dest).exists():
            assert sha((shared_data / e.dest).read_bytes()) == (e.member_sha256 or e.sha256), e.name
            checked += 1
    assert checked == 11
    with pytest.raises(ValueError, match="unknown data name"):
        cat.resolve(["GRCh99"])
    text = cat.table()
    assert "demo" in text and "pinned sha256" in text and "publisher md5 list" in text


# -- fetching from local mirrors ---------------------------------------------------------------------------


def make_deb(path: Path, members: dict[str, bytes]) -> bytes:
    """A minimal Debian package (ar: debian-binary, control.tar.xz, data.tar.xz)."""

    def tar(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as t:
            for name, data in files.items():
                info = tarfile.TarInfo("./" + name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, data in (("debian-binary", b"2.0\n"), ("control.tar.xz", tar({"control": b"Package: x\n"})), ("data.tar.xz", tar(members))):
        out.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
        out.write(data + (b"\n" if len(data) % 2 else b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return out.getvalue()


@pytest.fixture
def mirror(tmp_path):
    """A mirror folder holding a plain file, a .deb, a wheel and an md5 list, and a catalogue naming them."""
    m = tmp_path / "mirror"
    rng = __import__("random").Random(0)
    big = bytes(rng.getrandbits(8) for _ in range(300_000))
    (m / "example.org/data").mkdir(parents=True)
    (m / "example.org/data/big.bin").write_bytes(big)
    seq = "".join(rng.choice("ACGT") for _ in range(5000))
    fasta = gzip.compress(f">chrT\n{seq}\n".encode(), mtime=0)  # plain gzip, as UCSC publishes
    (m / "example.org/data/chrT.fa.gz").write_bytes(fasta)
    (m / "example.org/data/md5sum.txt").write_text(f"{hashlib.md5(fasta).hexdigest()}  chrT.fa.gz\n")
    deb = make_deb(m / "deb.example.org/pool/pkg_1.0_all.deb", {"usr/share/doc/pkg/a.vcf.gz": b"vcf-bytes", "usr/share/doc/pkg/b.txt": b"bee"})
    whl = m / "py.example.org/pkg-1.0-py3-none-any.whl"
    whl.parent.mkdir(parents=True)
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/annotations/t.txt", "table\n")
    cat = {"groups": {"all": ["big", "deb-a", "deb-b", "wheel-t", "fasta"]}, "entries": [
        {"name": "big", "description": "random bytes", "dest": "x/big.bin", "urls": ["https://example.org/data/big.bin"],
         "size": len(big), "sha256": sha(big)},
        {"name": "deb-a", "description": "a", "dest": "v/a.vcf.gz", "urls": ["http://deb.example.org/pool/pkg_1.0_all.deb"],
         "size": len(deb), "sha256": sha(deb), "member": "usr/share/doc/pkg/a.vcf.gz", "member_size": 9, "member_sha256": sha(b"vcf-bytes")},
        {"name": "deb-b", "description": "b", "dest": "v/b.txt", "urls": ["http://deb.example.org/pool/pkg_1.0_all.deb"],
         "size": len(deb), "sha256": sha(deb), "member": "usr/share/doc/pkg/b.txt", "member_size": 3, "member_sha256": sha(b"bee")},
        {"name": "wheel-t", "description": "t", "dest": "s/t.txt", "urls": ["https://py.example.org/pkg-1.0-py3-none-any.whl"],
         "size": whl.stat().st_size, "sha256": sha(whl.read_bytes()), "member": "pkg/annotations/t.txt", "member_size": 6,
         "member_sha256": sha(b"table\n")},
        {"name": "fasta", "description": "a chromosome", "dest": "g/chrT.fa.gz", "urls": ["https://example.org/data/chrT.fa.gz"],
         "md5_list": "https://example.org/data/md5sum.txt", "bgzip": True},
    ]}
    (tmp_path / "cat.yaml").write_text(yaml.safe_dump(cat))
    return {"dir": m, "catalogue": tmp_path / "cat.yaml", "big": big, "seq": seq}


def test_fetch_from_a_folder_mirror_verifies_extracts_and_indexes(mirror, tmp_path):
    from ntkit.io.genome import Genome

    cat = Catalogue.load(mirror["catalogue"])
    dest = tmp_path / "data"
    res = fetch(["all"], dest, mirror=str(mirror["dir"]), catalogue=cat, progress=False, log=lambda *_: None)
    assert [r["status"] for r in res] == ["fetched"] * 5
    assert (dest / "x/big.bin").read_bytes() == mirror["big"]
    assert (dest / "v/a.vcf.gz").read_bytes() == b"vcf-bytes" and (dest / "v/b.txt").read_bytes() == b"bee"
    assert (dest / "s/t.txt").read_text() == "table\n"
    g = Genome(dest / "g/chrT.fa.gz")  # recompressed with bgzip + faidx: random access, no warning
    assert g._fasta is not None and g.fetch("chrT", 100, 120) == mirror["seq"][100:120]
    assert not list(dest.rglob("*.part")) and not (dest / datasets.DOWNLOADS).exists()  # archives cleaned up
    sums = (dest / "SHA256SUMS").read_text()
    assert f"{sha(mirror['big'])}  x/big.bin" in sums and len(sums.splitlines()) == 5
    again = fetch(["all"], dest, mirror=str(mirror["dir"]), catalogue=cat, progress=False, log=lambda *_: None)
    assert [r["status"] for r in again] == ["present"] * 5


def test_corrupt_download_is_refused_and_nothing_placed(mirror, tmp_path):
    cat = Catalogue.load(mirror["catalogue"])
    bad = bytearray(mirror["big"])
    bad[1000] ^= 1
    (mirror["dir"] / "example.org/data/big.bin").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="corrupt.*sha256"):
        fetch(["big"], tmp_path / "d", mirror=str(mirror["dir"]), catalogue=cat, progress=False)
    assert not (tmp_path / "d/x/big.bin").exists() and not list((tmp_path / "d").rglob("*.part"))
    # the publisher's md5 list disagrees with the file: refused too
    (mirror["dir"] / "example.org/data/md5sum.txt").write_text("0" * 32 + "  chrT.fa.gz\n")
    with pytest.raises(ValueError, match="md5"):
        fetch(["fasta"], tmp_path / "d", mirror=str(mirror["dir"]), catalogue=cat, progress=False)
    assert not (tmp_path / "d/g/chrT.fa.gz").exists()
    # a member of a (valid) archive that differs from its pin
    deb_entry = yaml.safe_load(mirror["catalogue"].read_text())
    deb_entry["entries"][1]["member_sha256"] = "1" * 64
    (tmp_path / "cat2.yaml").write_text(yaml.safe_dump(deb_entry))
    with pytest.raises(ValueError, match="deb-a.*corrupt"):
        fetch(["deb-a"], tmp_path / "d", mirror=str(mirror["dir"]), catalogue=Catalogue.load(tmp_path / "cat2.yaml"), progress=False)
    assert not (tmp_path / "d/v/a.vcf.gz").exists()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder with HTTP Range support, an optional delay per 64 kB and extra headers;
    ``drop_after``: close the connection after that many bytes of a response (a dropped link)."""

    requests: list = []
    delay = 0.0
    headers_for: dict = {}
    drop_after: int | None = None

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        type(self).requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        for k, v in type(self).headers_for.get(self.path, {}).items():
            self.send_header(k, v)
        self.end_headers()
        sent = 0
        for i in range(start, len(data), 65536):
            block = data[i : i + 65536]
            if type(self).drop_after is not None and sent + len(block) > type(self).drop_after:
                self.wfile.write(block[: type(self).drop_after - sent])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(block)
            sent += len(block)
            time.sleep(type(self).delay)


@pytest.fixture
def http_mirror(mirror):
    handler = type("H", (RangeHandler,), {"requests": [], "delay": 0.0, "headers_for": {}, "drop_after": None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(mirror["dir"])))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield {**mirror, "url": f"http://127.0.0.1:{server.server_port}", "handler": handler}
    server.shutdown()


def test_http_mirror_resumes_a_partial_download(http_mirror, tmp_path):
    cat = Catalogue.load(http_mirror["catalogue"])
    dest = tmp_path / "d"
    (dest / "x").mkdir(parents=True)
    (dest / "x/big.bin.part").write_bytes(http_mirror["big"][:123_456])  # left by an interrupted run
    fetch(["big"], dest, mirror=http_mirror["url"], catalogue=cat, progress=False, log=lambda *_: None)
    assert (dest / "x/big.bin").read_bytes() == http_mirror["big"]
    assert http_mirror["handler"].requests == [("/example.org/data/big.bin", "bytes=123456-")]


def test_kill_during_download_then_rerun(http_mirror, tmp_path):
    """kill -9 in the middle of a download: nothing at the destination, the rerun resumes and verifies."""
    http_mirror["handler"].delay = 0.1  # 300 kB in 64 kB blocks: ~0.5 s
    dest = tmp_path / "d"
    cmd = [sys.executable, "-m", "ntkit.cli", "data", "fetch", "big", "--dest", str(dest), "--mirror", http_mirror["url"],
           "--catalogue", str(http_mirror["catalogue"]), "--no-progress"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = dest / "x/big.bin.part"
    for _ in range(400):
        if part.exists() and part.stat().st_size >= 65536:
            break
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert 0 < part.stat().st_size < len(http_mirror["big"]) and not (dest / "x/big.bin").exists()
    http_mirror["handler"].delay = 0.0
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (dest / "x/big.bin").read_bytes() == http_mirror["big"]
    assert http_mirror["handler"].requests[-1][1] is not None  # resumed with a Range request


def test_server_declared_sha256(http_mirror, tmp_path):
    big = http_mirror["big"]
    cat = yaml.safe_load(http_mirror["catalogue"].read_text())
    cat["entries"] = [{"name": "hf", "description": "", "dest": "t/train.fna", "urls": ["https://example.org/data/big.bin"],
                       "sha256_header": True}]
    (tmp_path / "hf.yaml").write_text(yaml.safe_dump({"entries": cat["entries"]}))
    c = Catalogue.load(tmp_path / "hf.yaml")
    http_mirror["handler"].headers_for = {"/example.org/data/big.bin": {"X-Linked-Etag": f'"{sha(big)}"'}}
    fetch(["hf"], tmp_path / "ok", mirror=http_mirror["url"], catalogue=c, progress=False, log=lambda *_: None)
    assert (tmp_path / "ok/t/train.fna").read_bytes() == big
    http_mirror["handler"].headers_for = {"/example.org/data/big.bin": {"X-Linked-Etag": f'"{"2" * 64}"'}}
    with pytest.raises(ValueError, match="corrupt"):
        fetch(["hf"], tmp_path / "bad", mirror=http_mirror["url"], catalogue=c, progress=False, log=lambda *_: None)


def test_offline_is_one_line_naming_what_was_tried(mirror, tmp_path, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    rc = main(["data", "fetch", "big", "--dest", str(tmp_path / "d"), "--mirror", f"http://127.0.0.1:{port}",
               "--catalogue", str(mirror["catalogue"]), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"tried http://127.0.0.1:{port}/example.org/data/big.bin" in err and "--mirror" in err


def test_cli_list_and_path(capsys, monkeypatch):
    monkeypatch.delenv("NTKIT_DATA", raising=False)
    assert main(["data", "fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert "grch37-chr20" in out and "nt-tasks-revised" in out and "grch38-primary" in out
    assert main(["data", "path"]) == 0
    assert str(SHIPPED) in capsys.readouterr().out


def test_a_dropped_connection_keeps_the_part_and_the_rerun_resumes(http_mirror, tmp_path):
    cat = Catalogue.load(http_mirror["catalogue"])
    dest = tmp_path / "d"
    http_mirror["handler"].drop_after = 100_000  # the link drops a third of the way in
    with pytest.raises(ConnectionError, match=r"download of big interrupted at 100,000 of 300,000 bytes .*big\.bin\.part is kept: "
                                              r"run the fetch again to resume it"):
        fetch(["big"], dest, mirror=http_mirror["url"], catalogue=cat, progress=False, log=lambda *_: None)
    assert (dest / "x/big.bin.part").stat().st_size == 100_000 and not (dest / "x/big.bin").exists()
    http_mirror["handler"].drop_after = None
    fetch(["big"], dest, mirror=http_mirror["url"], catalogue=cat, progress=False, log=lambda *_: None)
    assert (dest / "x/big.bin").read_bytes() == http_mirror["big"]
    assert http_mirror["handler"].requests[-1] == ("/example.org/data/big.bin", "bytes=100000-")  # resumed, not restarted


@pytest.mark.parametrize("dest", ["../outside.txt", "/tmp/ntkit-abs-outside.txt", "x/../../outside.txt", ""])
def test_catalogue_paths_stay_inside_dest(mirror, tmp_path, dest):
    cat = yaml.safe_load(mirror["catalogue"].read_text())
    cat["entries"][0]["dest"] = dest
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(cat))
    victim = tmp_path / "outside.txt"
    victim.write_text("a user's file\n")
    with pytest.raises(ValueError, match="must be a relative path inside --dest"):
        Catalogue.load(tmp_path / "evil.yaml")
    assert victim.read_text() == "a user's file\n"


def test_a_symlink_inside_dest_cannot_lead_outside(mirror, tmp_path):
    cat = Catalogue.load(mirror["catalogue"])
    dest = tmp_path / "d"
    dest.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (dest / "x").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="leads outside .* catalogue paths stay inside --dest"):
        fetch(["big"], dest, mirror=str(mirror["dir"]), catalogue=cat, progress=False, log=lambda *_: None)
    assert not list((tmp_path / "elsewhere").iterdir())


def test_an_existing_file_is_never_replaced_without_force(mirror, tmp_path):
    cat = Catalogue.load(mirror["catalogue"])
    dest = tmp_path / "d"
    (dest / "x").mkdir(parents=True)
    (dest / "x/big.bin").write_text("my own file\n")
    with pytest.raises(ValueError, match=r"big\.bin exists and differs from the catalogue's big .* it is not replaced; --force"):
        fetch(["big"], dest, mirror=str(mirror["dir"]), catalogue=cat, progress=False, log=lambda *_: None)
    assert (dest / "x/big.bin").read_text() == "my own file\n"
    fetch(["big"], dest, mirror=str(mirror["dir"]), catalogue=cat, progress=False, force=True, log=lambda *_: None)
    assert (dest / "x/big.bin").read_bytes() == mirror["big"]


@pytest.mark.parametrize("edit, message", [
    (lambda e: e.pop("description"), "entry 'big': missing field 'description'"),
    (lambda e: e.pop("urls"), "entry 'big': missing field 'urls'"),
    (lambda e: e.update(size="300 kB"), "entry 'big': field 'size' is '300 kB', expected int"),
    (lambda e: e.update(urls=[]), "entry 'big': field 'urls' must be a non-empty list"),
    (lambda e: e.update(bgzip="yes"), "entry 'big': field 'bgzip' is 'yes', expected bool"),
])
def test_catalogue_entries_are_checked_field_by_field(mirror, tmp_path, capsys, edit, message):
    from ntkit.cli import main

    cat = yaml.safe_load(mirror["catalogue"].read_text())
    edit(cat["entries"][0])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cat))
    rc = main(["data", "fetch", "big", "--dest", str(tmp_path / "d"), "--catalogue", str(tmp_path / "c.yaml"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"c.yaml: {message}" in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "bad.yaml").write_text("entries: [\n  - name: x\n")
    assert main(["data", "fetch", "--list", "--catalogue", str(tmp_path / "bad.yaml")]) == 2
    assert "bad.yaml: not valid YAML" in capsys.readouterr().err
