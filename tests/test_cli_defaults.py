"""Defaults live in the library: every option of every command that names a library setting has
the library's default (config dataclasses, the functions the command calls)."""

import argparse
import dataclasses
import inspect

import pytest

from ntkit.cli import build_parser
from ntkit.runtime import engine
from ntkit.tasks import attention, benchmark, demo, embed, finetune, mutagenesis, perturb, probe
from ntkit.tasks.splice import data as splice_data
from ntkit.tasks.splice import train as splice_train

# command -> (library sources, CLI dest -> library name where they differ, the least number of options compared)
SOURCES = {
    "embed": ([embed.embed_to_file, embed.iter_embeddings], {}, 7),
    "probe": ([probe.cross_validate_probe], {"folds": "n_folds", "probe": "kind"}, 3),
    "finetune": ([finetune.FinetuneConfig], {}, 6),
    "predict": ([finetune.predict_to_file], {}, 3),
    "benchmark": ([benchmark.run_benchmark], {"folds": "n_folds", "epochs": "finetune_epochs", "lr": "finetune_lr"}, 9),
    "score-variants": ([perturb.score_variants_to_files, perturb.EffectOptions],
                       {"window_bp": "window_bp"}, 11),
    "mutagenesis": ([mutagenesis.mutagenesis_to_files, perturb.EffectOptions], {}, 10),
    "attention": ([attention.attention_enrichment], {}, 2),
    "demo": ([demo.run], {}, 8),
    "splice build": ([splice_data.build_windows], {}, 3),
    "splice train": ([splice_train.SpliceTrainConfig], {}, 10),
    "splice score-variants": ([perturb.variant_effects_to_files, perturb.EffectOptions], {}, 5),
}


def library_defaults(sources) -> dict:
    out = {}
    for src in sources:
        if dataclasses.is_dataclass(src):
            for f in dataclasses.fields(src):
                if f.default is not dataclasses.MISSING:
                    out.setdefault(f.name, f.default)
                elif f.default_factory is not dataclasses.MISSING:
                    out.setdefault(f.name, f.default_factory())
        else:
            for name, p in inspect.signature(src).parameters.items():
                if p.default is not inspect.Parameter.empty:
                    out.setdefault(name, p.default)
    return out


def commands(parser, path=()):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield " ".join(path + (name,)), sp
                yield from commands(sp, path + (name,))


def norm(v):
    return list(v) if isinstance(v, (tuple, list)) else v


@pytest.mark.parametrize("command", sorted(SOURCES))
def test_cli_defaults_are_the_library_defaults(command):
    sources, alias, least = SOURCES[command]
    parser = dict(commands(build_parser()))[command]
    lib = library_defaults(sources)
    compared = []
    for a in parser._actions:
        name = alias.get(a.dest, a.dest)
        if not a.option_strings or isinstance(a, argparse._HelpAction) or name not in lib:
            continue
        assert norm(a.default) == norm(lib[name]), f"ntkit {command} {a.option_strings[0]}: CLI {a.default!r}, library {lib[name]!r}"
        compared.append(name)
    assert len(compared) >= least, f"ntkit {command}: only {compared} compared"


def test_runtime_options_default_to_the_engine():
    """--batch-tokens, --device, --dtype unset mean the engine's defaults (per device)."""
    rt = engine.Runtime()
    for command, parser in commands(build_parser()):
        opts = {a.dest: a.default for a in parser._actions}
        for name in ("batch_tokens", "device", "dtype"):
            if name in opts:
                assert opts[name] == getattr(rt, name), (command, name)
