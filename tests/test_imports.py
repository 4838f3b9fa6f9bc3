"""Every module imports on its own, and the package has no import cycles.

Why: an import cycle works or breaks depending on which module a user happens to import first (the
half-initialised module has no attribute yet), so it passes a test suite that imports in one order and
fails for a script that imports in another. The first test imports every module first in a fresh
interpreter; the second finds cycles statically, so it fails even when today's import order is lucky.

The layering (docs/design.md, "Layering") is checked too: morphism imports neither spaces nor search,
spaces does not import search, and only search imports Ray or Optuna.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("morphism", "spaces", "search")  # each folder installs as morphnas.<folder>


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the three packages (a package is its __init__)."""
    mods: dict[str, Path] = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = ["morphnas", *rel.parts]
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


MODULES = _module_files()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST):
    """Every Import/ImportFrom under ``node`` at any depth, skipping ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                yield from _imports_in(sub)
            continue
        yield from _imports_in(child)


def _imports_in(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _imports(node)


def imported_modules(name: str, path: Path) -> set[str]:
    """The morphnas modules that ``name`` imports (only names that are modules of the three packages).

    ``from pkg import x`` imports the submodule ``pkg.x`` when there is one, else ``pkg`` itself.
    """
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
            continue
        if node.level:
            base_parts = package.split(".")
            if node.level > 1:
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in MODULES:
                found.add(sub)
            elif base in MODULES:
                found.add(base)
    found.discard(name)
    return found


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name)
        for target in imported_modules(name, path):
            graph.add_edge(name, target)
    return graph


def import_cycles(graph: nx.DiGraph) -> list[tuple[list[str], list[str]]]:
    """(modules, one cycle through them) for every strongly connected component of more than one module.

    A component lists every module caught in the tangle; the cycle is one concrete loop to cut first.
    """
    found = []
    for comp in nx.strongly_connected_components(graph):
        if len(comp) < 2:
            continue
        edges = nx.find_cycle(graph.subgraph(comp), source=min(comp))
        found.append((sorted(comp), [u for u, _ in edges] + [edges[-1][1]]))
    return sorted(found)


def _short(name: str) -> str:
    return name.removeprefix("morphnas.")


def test_the_graph_sees_relative_absolute_and_function_level_imports():
    # Guards the checker itself: if it saw nothing, "no cycle" would be meaningless.
    graph = import_graph()
    assert graph.has_edge("morphnas.morphism.ops.deepen", "morphnas.morphism.ops.base")      # relative
    assert graph.has_edge("morphnas.spaces.registry", "morphnas.spaces.seeds.catalog")
    assert graph.has_edge("morphnas.search.run.driver", "morphnas.search.trial.jobs")
    assert graph.number_of_edges() > 3 * len(MODULES) // 2


def test_no_import_cycles():
    cycles = import_cycles(import_graph())
    text = "\n".join(f"  {{{', '.join(map(_short, comp))}}}: {' -> '.join(map(_short, cyc))}"
                     for comp, cyc in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) among morphism/, spaces/, search/:\n{text}"


def test_layering():
    """morphism <- spaces <- search: a lower layer never imports a higher one."""
    bad = []
    for name, target in import_graph().edges:
        low, high = name.split(".")[1], target.split(".")[1]
        if TOPS.index(high) > TOPS.index(low):
            bad.append(f"{_short(name)} -> {_short(target)}")
    assert not bad, "a lower layer imports a higher one: " + ", ".join(sorted(bad))


# The wings of search/ (and the modules at its root), lowest first: a wing imports only wings before it
# (and itself). A newcomer reads the search from the bottom up: the run's state, the study that shows
# it, the strategies, the data, the config, a trial on a worker, Tune around it, exports, the run, the CLI.
SEARCH_WINGS = ("errors", "plugins", "state", "study", "strategies", "data", "config", "trial", "tune", "export", "run", "api",
                "cli")
SPACES_WINGS = ("errors", "counting", "actions", "seeds", "registry", "resolve", "distance", "draw")


def _wing(name: str) -> tuple[str, str] | None:
    parts = name.split(".")
    if len(parts) < 3:
        return None
    return parts[1], parts[2]


def test_wings_import_one_way():
    """Inside search/ and spaces/, a wing never imports a wing above it (so the wings form no cycle)."""
    order = {"search": SEARCH_WINGS, "spaces": SPACES_WINGS}
    bad = []
    for name, target in import_graph().edges:
        a, b = _wing(name), _wing(target)
        if a is None or b is None or a[0] != b[0] or a[0] not in order:
            continue
        wings = order[a[0]]
        assert a[1] in wings or a[1] == "__main__", f"{_short(name)}: wing {a[1]!r} is not in the list of wings"
        if a[1] == "__main__":
            continue
        if wings.index(b[1]) > wings.index(a[1]):
            bad.append(f"{_short(name)} -> {_short(target)}")
    assert not bad, "a wing imports a wing above it: " + ", ".join(sorted(bad))


def test_no_module_imports_another_modules_private_name():
    """``from x import _name`` (or ``x._name``) across modules couples them through what x may change."""
    bad = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases = {}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                    base = ".".join(parts + ([node.module] if node.module else []))
                for a in node.names:
                    # a package's private helper module (``ops/_grow.py``) is its own, not another's
                    own_module = f"{base}.{a.name}" in MODULES and base == package
                    if a.name.startswith("_") and not a.name.startswith("__") and not own_module:
                        bad.append(f"{_short(name)}: from {base} import {a.name}")
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            else:
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and aliases.get(node.value.id, "").startswith("morphnas.")):
                bad.append(f"{_short(name)}: {node.value.id}.{node.attr}")
    assert not bad, "private names used across modules: " + "; ".join(sorted(set(bad)))


# Imports inside functions hide the module graph from a reader. They are allowed for heavy or optional
# third-party dependencies, and for the project's own modules only in the command modules and the
# config (which keep `morphnas --help`, the light commands and a worker's config free of Ray and
# Optuna); each with a one-line reason in a '# lazy: ...' comment on the import line.
LAZY_OK = ("ray", "optuna_dashboard", "torchvision", "matplotlib", "mlxtend", "onnx", "onnxruntime", "psycopg2",
           "sklearn", "PIL", "scipy")
LAZY_OWN_OK = ("morphnas.search.cli.", "morphnas.search.config", "morphnas.search.export.standalone_loader")


def test_imports_inside_functions_are_lazy_with_a_reason():
    bad = []
    for name, path in MODULES.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source, str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in _imports(fn):
                heads = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                head = heads[0].split(".")[0] if heads and not getattr(node, "level", 0) else "."
                allowed = head in LAZY_OK or (head == "morphnas" and name.startswith(LAZY_OWN_OK))
                if not allowed:
                    bad.append(f"{_short(name)}:{node.lineno} imports {heads[0] or '.'} inside {fn.name}()")
                elif "# lazy:" not in lines[node.lineno - 1]:
                    bad.append(f"{_short(name)}:{node.lineno} lazy import of {heads[0]} without a '# lazy: reason'")
    assert not bad, f"{len(bad)} import(s) inside functions:\n  " + "\n  ".join(bad)


def test_only_search_imports_ray_or_optuna():
    bad = []
    for name, path in MODULES.items():
        if name.startswith("morphnas.search"):
            continue
        for node in _imports(ast.parse(path.read_text())):
            heads = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad += [f"{_short(name)} imports {h}" for h in heads if h.split(".")[0] in ("ray", "optuna")]
    assert not bad, "; ".join(bad)


# Imports each module given on the command line in its own fresh interpreter state would cost ~1 s of
# torch start-up per module; instead one interpreter per module is forked from a parent that has already
# imported the third-party libraries (torch, numpy, ...) but no morphnas module, so each child imports
# its module first, exactly as a fresh interpreter would.
_CHILD = r"""
import importlib, os, sys
import networkx, numpy, torch, yaml  # third-party start-up cost, paid once
for m in ("ray", "optuna", "matplotlib", "optuna_dashboard", "sklearn", "torchvision"):
    try:
        importlib.import_module(m)
    except ImportError:
        pass
assert not [m for m in sys.modules if m.startswith("morphnas.")], "morphnas imported too early"
failed = 0
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as e:
            print(f"{name}: {type(e).__name__}: {e}", flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    failed += status != 0
sys.exit(1 if failed else 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_first_in_a_fresh_interpreter():
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    names = [m for m in MODULES if not m.endswith(".__main__")]  # __main__ runs the CLI when imported
    proc = subprocess.run([sys.executable, "-c", _CHILD, *names], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"modules that fail when imported first:\n{proc.stdout}{proc.stderr[-2000:]}"
