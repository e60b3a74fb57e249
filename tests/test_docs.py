"""The documentation runs: the README and every page of ``docs/`` execute their ``python`` blocks
in order (``py`` blocks are sketches), the command-line walkthrough of ``docs/cli.md`` runs as
written (both on the data shipped with ntkit), every ``ntkit ...`` command line in them parses with
the current CLI, every command is documented, and the MkDocs site builds with ``--strict`` (no
broken link, every object of the API reference exists)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ntkit.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def fenced(page: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of a page, opening and closing fences told apart."""
    out, lang, code = [], None, []
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, code = line[3:].strip(), []
            else:
                out.append((lang, "\n".join(code) + "\n"))
                lang = None
        elif lang is not None:
            code.append(line)
    return out


def blocks(lang: str, pages=PAGES) -> list[str]:
    return [code for page in pages for l, code in fenced(page) if l == lang]


def run_page(page: Path) -> dict:
    namespace: dict = {}
    for block in blocks("python", [page]):
        exec(compile(block, str(page.relative_to(ROOT)), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("page", [p for p in PAGES if blocks("python", [p])], ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path, monkeypatch):
    """On the data shipped with ntkit: no ../shared, no NTKIT_DATA; each page in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NTKIT_DATA", raising=False)
    namespace = run_page(page)
    if page.name == "python-api.md":
        assert (tmp_path / "my-model" / "model.safetensors").exists() and (tmp_path / "adapters/task/adapter_model.safetensors").exists()
        assert len(namespace["table"]) == 1800 and namespace["scores"].table["status"].eq("scored").sum() == 18
    if page.name == "README.md":
        assert namespace["probs"].shape == (3009, 14) and namespace["vectors"].shape[0] == 2


def test_readme_is_short_and_points_to_the_docs():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 150
    for link in re.findall(r"\]\((docs/[^)#]+)\)", text):
        assert (ROOT / link).exists(), link


def test_mkdocs_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extras (pip install -e '.[docs]') are not installed")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for page in ("index.html", "models/index.html", "reference/models/index.html", "benchmarks/index.html"):
        assert (tmp_path / "site" / page).exists(), page
    assert "for_config" in (tmp_path / "site/reference/models/index.html").read_text()  # the API reference is rendered


def command_lines() -> list[list[str]]:
    out = []
    for block in blocks("bash") + blocks(""):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #")[0].strip()
            m = re.search(r"(?:^|\s)(?:ntkit|\.venv/bin/ntkit|-m ntkit\.cli)\s+(.*)$", line)
            if m and not line.startswith("#"):
                out.append(shlex.split(m.group(1).replace("[", "").replace("]", "").replace("&&", "")))
    return out


def test_cli_lines_parse():
    lines = command_lines()
    assert len(lines) >= 15
    parser = build_parser()
    for args in lines:
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"documented command does not parse: ntkit {' '.join(args)}")


def test_walkthrough_runs_as_written(tmp_path):
    """The bash block of docs/cli.md that starts with ``# walkthrough`` runs line by line as a user
    would (bash -e, ntkit on PATH, no NTKIT_DATA), and its outputs say what the page's comments say."""
    (block,) = [b for b in blocks("bash", [ROOT / "docs" / "cli.md"]) if b.startswith("# walkthrough")]
    env = {k: v for k, v in os.environ.items() if k != "NTKIT_DATA"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert '"weights": "a preset is an architecture' in out
    assert "wrote emb.parquet: 20 sequences" in out
    assert "| promoter_all | 71 | 2 | 10 |" in out and "| promoter_all | 71 | 4 | 10 |" in out
    assert "test (200 sequences): MCC" in out and (tmp_path / "adapters/enhancers/test_predictions.tsv").exists()
    assert "wrote predictions.tsv: 20 sequences" in out
    assert "| promoter_all ⚠ | 71 | 5 |" in (tmp_path / "runs/benchmark/table.md").read_text()  # few rows per fold: flagged
    assert "7/7 alleles scored; skipped none" in out and "18/18 alleles scored; skipped none" in out
    import pandas as pd
    import pysam

    snvs = pd.read_csv(tmp_path / "snvs.tsv", sep="\t")
    assert snvs["llr"].notna().all() and snvs["window_start"].dtype.kind == "i"
    indels = pd.read_csv(tmp_path / "indels.tsv", sep="\t")
    assert indels["l2_-1"].notna().all() and "llr" not in indels
    assert "##fileformat=VCFv4.2" in str(pysam.VariantFile(str(tmp_path / "snvs.vcf.gz")).header)
    mut = pd.read_parquet(tmp_path / "runs/mutagenesis/mutagenesis.parquet")
    assert len(mut) == 1350 and set(mut["region"]) == {"ID1", "BCL2L1", "DNMT3B"} and set(mut["chrom"]) == {"20"}
    for f in ("train.npz", "test.npz", "splice-model/splice_config.json", "test.splice.tsv", "runs/attention/attention_enrichment.csv"):
        assert (tmp_path / f).exists(), f
    assert "ntkit (segment head, frozen)" in out and "| PWM |" in out


def test_every_command_and_option_is_documented():
    """``--help`` of every command shows each option with help text and its default; the
    documentation names every command."""
    import argparse

    parser = build_parser()

    def walk(p, path):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    yield path + [name], None, sp
                    yield from walk(sp, path + [name])
            elif not isinstance(a, argparse._HelpAction):
                yield path, a, p

    commands = set()
    for path, action, p in walk(parser, []):
        if action is None:
            commands.add(" ".join(path))
            continue
        assert action.help, f"ntkit {' '.join(path)} {action.option_strings or action.dest}: no help text"
        d = action.default
        if action.option_strings and d not in (None, False, argparse.SUPPRESS) and not isinstance(action, argparse._StoreConstAction):
            shown = " ".join(map(str, d)) if isinstance(d, list) else str(d)
            assert f"default: {shown}" in " ".join(p.format_help().split()), f"ntkit {' '.join(path)} {action.option_strings}: default not shown"
    text = " ".join(" ".join(p.read_text().split()) for p in PAGES)
    missing = sorted(c for c in commands if f"ntkit {c}" not in text)
    assert not missing, f"commands the documentation never shows: {missing}"


def test_snakefile_runs_shards_as_jobs_and_equals_one_process(tmp_path):
    """The Snakefile of docs/jobs.md, with snakemake from PyPI: 2 shards as 2 jobs, then the merge;
    the merged table equals a single-process run of the same command."""
    pytest.importorskip("snakemake", reason="snakemake (the test extras)")
    import pandas as pd

    from ntkit import build, get_preset, save_checkpoint
    from ntkit.io.genome import write_fasta

    (snakefile,) = blocks("snakemake", [ROOT / "docs" / "jobs.md"])
    (tmp_path / "Snakefile").write_text(snakefile)
    import numpy as np

    seq = "".join(np.random.default_rng(3).choice(list("ACGT"), 3000))
    write_fasta(tmp_path / "g.fa", [("20", seq)])
    recs = "".join(f"20\t{p}\t.\t{seq[p - 1]}\t{'A' if seq[p - 1] != 'A' else 'G'}\t.\t.\t.\n" for p in range(200, 2800, 200))
    (tmp_path / "v.vcf").write_text("##fileformat=VCFv4.2\n##contig=<ID=20,length=3000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + recs)
    save_checkpoint(build(get_preset("nt-v2-tiny").replace(max_tokens=100), seed=0), tmp_path / "m")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cfg = ["vcf=v.vcf", "fasta=g.fa", "model=m", "shards=2", "extra=--chunk-size 4"]
    r = subprocess.run([sys.executable, "-m", "snakemake", "-c", "2", "--config", *cfg], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "shards" / "0.done").exists() and (tmp_path / "shards" / "1.done").exists()
    r = subprocess.run([sys.executable, "-m", "ntkit.cli", "score-variants", "--model", "m", "--vcf", "v.vcf", "--fasta", "g.fa",
                        "--out", "one.tsv"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "scores.tsv", sep="\t"), pd.read_csv(tmp_path / "one.tsv", sep="\t"))
