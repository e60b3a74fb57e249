"""ntkit.runtime.progress: a redrawn bar on a terminal, whole lines in a log (every 30 s or 5% of the
total, no carriage returns), nothing on request; the command line's --progress."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ntkit.io.genome import write_fasta
from ntkit.runtime import progress

ROOT = Path(__file__).resolve().parents[1]


def test_lines_mode_writes_a_few_whole_lines():
    out = io.StringIO()
    bar = progress.LineBar(total=1000, desc="work", unit="item", file=out, interval=1e9)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and 20 <= len(lines) <= 22  # the start, one per 5%, none repeated
    assert lines[-1].startswith("work: 100%") and "1000/1000" in lines[-1]
    out = io.StringIO()
    with progress.LineBar(total=None, desc="open-ended", file=out, interval=0.0) as b:  # no total: by time only
        b.update(3)
    assert out.getvalue().splitlines()[-1].startswith("open-ended: 3")


def test_modes(monkeypatch):
    for mode in progress.MODES:
        progress.set_mode(mode)
    with pytest.raises(ValueError, match="progress mode 'fancy'"):
        progress.set_mode("fancy")
    progress.set_mode("lines")
    assert isinstance(progress.bar(total=3), progress.LineBar)
    assert progress.bar(total=3, enabled=False).disable
    progress.set_mode("none")
    assert progress.bar(total=3).disable
    progress.set_mode("auto")  # stderr here is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress.mode() == "lines"


@pytest.mark.parametrize("mode, lines", [(None, True), ("lines", True), ("none", False), ("bar", True)])
def test_a_job_logged_to_a_file(tmp_path, mode, lines):
    """``ntkit embed ... 2> log``: by default (stderr not a terminal) whole lines, no redraws."""
    import ntkit

    ntkit.save_checkpoint(ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0), tmp_path / "m")
    write_fasta(tmp_path / "s.fa", [(f"s{i}", "ACGTAGGCTA" * (5 + i % 7)) for i in range(300)])
    env = {k: v for k, v in os.environ.items() if k != "NTKIT_PROGRESS"}
    cmd = [sys.executable, "-m", "ntkit.cli", *(["--progress", mode] if mode else []), "embed", str(tmp_path / "s.fa"),
           "--model", str(tmp_path / "m"), "--chunk-size", "50", "--out", str(tmp_path / "e.parquet")]
    with open(tmp_path / "log", "w") as log:
        r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    assert r.returncode == 0
    text = (tmp_path / "log").read_text()
    progress_lines = [l for l in text.replace("\r", "\n").splitlines() if l.startswith("embedding:")]
    assert bool(progress_lines) == lines
    if mode in (None, "lines"):  # the default in a log: whole lines, a few dozen at most whatever the input's size
        assert "\r" not in text and len(progress_lines) <= 45, len(progress_lines)
