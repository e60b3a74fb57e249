"""The README's code runs: its Python blocks execute in order (on the demo data), and every
``ntkit ...`` command line in it parses with the current CLI."""

import re
import shlex
from pathlib import Path

import pytest

from ntkit.cli import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def fenced() -> list[tuple[str, str]]:
    """(language, code) of every fenced block, opening and closing fences told apart."""
    out, lang, code = [], None, []
    for line in README.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, code = line[3:].strip(), []
            else:
                out.append((lang, "\n".join(code) + "\n"))
                lang = None
        elif lang is not None:
            code.append(line)
    return out


def blocks(lang: str) -> list[str]:
    return [code for l, code in fenced() if l == lang]


def test_python_blocks_run(tmp_path, monkeypatch):
    """On the data shipped with ntkit: no ../shared, no NTKIT_DATA."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NTKIT_DATA", raising=False)
    code = blocks("python")
    assert len(code) >= 2
    namespace: dict = {}
    for block in code:
        exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "my-model" / "model.safetensors").exists() and (tmp_path / "adapters/task/adapter_model.safetensors").exists()
    assert len(namespace["table"]) == 1800 and namespace["scores"].table["status"].eq("scored").sum() == 18


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
            pytest.fail(f"README command does not parse: ntkit {' '.join(args)}")
