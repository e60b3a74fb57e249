"""The house's rules, held by the tests: layers as packages that import only downwards, no import
circles, ntkit's own imports at the top of each module (the command line defers the library on
purpose: ``ntkit --help`` never imports torch), and a package docstring per layer saying what
lives there and what it may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ntkit"
# lowest first; a module may import its own layer and the layers before it
LAYERS = ["core", "runtime", "io", "models", "tasks", "hf", "cli"]
RANK = {name: i for i, name in enumerate(LAYERS)} | {"recipes": LAYERS.index("io")}  # recipes: shipped recipe files


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = ["ntkit", *p.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _targets(module: str, node) -> list[str]:
    """The ntkit modules an import statement names (``from ntkit.models import ntv3``: the package)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if node.level:  # relative: resolved against the module's package
        base = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        name = ".".join(base + ([node.module] if node.module else []))
    else:
        name = node.module or ""
    out = []
    for a in node.names:
        full = f"{name}.{a.name}"
        out.append(full if full in MODULES else name)
    return [t for t in out if t in MODULES]


def _imports(module: str) -> tuple[set[str], list[tuple[int, str]]]:
    """(module-level imports of ntkit modules, [(line, target)] of imports inside functions)."""
    tree = ast.parse(MODULES[module].read_text())
    top = {t for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for t in _targets(module, node)}
    inner = [(node.lineno, t) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom)) for t in _targets(module, node)]
    return top - {module}, inner


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package facade (ntkit/__init__)


def test_the_import_graph_has_no_circles():
    graph = {m: _imports(m)[0] for m in MODULES}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_layers_import_only_downwards():
    wrong = []
    for m in MODULES:
        layer = _layer(m)
        if layer is None:
            continue
        for t in _imports(m)[0]:
            if _layer(t) is not None and RANK[_layer(t)] > RANK[layer]:
                wrong.append(f"{m} imports {t}")
    assert not wrong, wrong


def test_ntkit_modules_are_imported_at_the_top():
    """Only the command line imports the library inside functions (on purpose, so that parsing and
    --help stay fast); everywhere else a module's header says what it depends on."""
    inner = [f"{m}:{line} imports {t}" for m in MODULES if not m.startswith("ntkit.cli") for line, t in _imports(m)[1]]
    assert not inner, inner


@pytest.mark.parametrize("layer", [l for l in LAYERS if (ROOT / l).is_dir()])
def test_each_layer_says_what_lives_there_and_what_it_may_import(layer):
    doc = ast.get_docstring(ast.parse((ROOT / layer / "__init__.py").read_text())) or ""
    assert len(doc) > 80, f"ntkit/{layer}/__init__.py: a docstring saying what lives there"
    if layer != "cli":
        assert "Imports:" in doc, f"ntkit/{layer}/__init__.py: say what the layer may import"


def test_every_family_is_a_package_registered_with_the_loader():
    from ntkit.models import registry

    names = {f.name for f in registry.families()}
    packages = {p.name for p in (ROOT / "models").iterdir() if (p / "__init__.py").exists()}
    assert names == packages == {"nt", "ntv3", "segment_nt", "spliceai"}
