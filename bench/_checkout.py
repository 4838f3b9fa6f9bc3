"""Make ``import morphnas.<...>`` work from a plain checkout, without ``pip install``.

setup.py maps the top-level folders onto the ``morphnas`` namespace (``morphnas_pkg/`` is
``morphnas``, ``morphism/`` is ``morphnas.morphism``, ...). :func:`use_checkout` builds the same
mapping at run time: it loads ``morphnas_pkg/__init__.py`` as the ``morphnas`` package, with the
checkout's root as one more place to find its subpackages. When ``morphnas`` is already importable
(an installed or editable checkout) it changes nothing, unless ``force`` asks for this checkout.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def use_checkout(root: Path = ROOT, force: bool = False) -> str:
    """Make ``morphnas`` importable from ``root``; returns where it comes from (for the report)."""
    if "morphnas" in sys.modules and not force:
        return str(Path(sys.modules["morphnas"].__file__ or "?").parent)
    if not force:
        try:
            spec = importlib.util.find_spec("morphnas")
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            return str(Path(spec.origin or "?").parent)
    for name in [m for m in sys.modules if m == "morphnas" or m.startswith("morphnas.")]:
        del sys.modules[name]
    init = root / "morphnas_pkg" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "morphnas", init, submodule_search_locations=[str(root / "morphnas_pkg"), str(root)])
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {init}: run from a morphnas checkout")
    module = importlib.util.module_from_spec(spec)
    sys.modules["morphnas"] = module
    spec.loader.exec_module(module)
    return f"{root} (checkout, not installed)"
