"""The layering of the distribution, checked on the source (``docs/architecture.md``).

* a lower layer never imports a higher one (within ``causalmem`` and within ``steer``);
* ``steer`` never imports ``causalmem``, ``causalmem`` never imports ``steer``, and the shared
  base ``lmecon`` imports neither;
* importing a package loads no torch, PyMC or Altair (and ``import steer`` nothing of causalmem).

Imports inside functions count (they are still dependencies); imports under
``if TYPE_CHECKING:`` do not. ``test_the_checker_finds_a_planted_violation`` shows the check is
not vacuous.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each entry may import itself and any entry before it; nothing after it.
LAYERS: dict[str, Sequence[Sequence[str]]] = {
    "causalmem": (
        ("causalmem._types", "causalmem.errors"),
        ("causalmem._numerics",),
        ("causalmem.panel",),
        ("causalmem.instances",),
        ("causalmem.results",),
        ("causalmem.estimators",),
        ("causalmem.analysis",),
        ("causalmem.presentation",),
        ("causalmem.scoring",),
        ("causalmem.lab",),
        ("causalmem.workflows",),
        ("causalmem.cli",),
    ),
    "steer": (
        ("steer._types", "steer.errors", "steer.config"),
        ("steer.resources",),
        ("steer.core",),
        ("steer.train", "steer.generation", "steer.highlighting", "steer.factors"),
        ("steer.crossmodel", "steer.evaluation", "steer.export"),
        ("steer.charts",),
        ("steer.workflows",),
        ("steer.cli",),
    ),
}
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "lmecon": ("causalmem", "steer"),
    "steer": ("causalmem",),
    "causalmem": ("steer",),
}
HEAVY = ("torch", "pymc", "altair", "transformers", "arviz")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_pkg: bool) -> Iterator[tuple[int, str]]:
    """Yield ``(line, imported module)`` for every runtime import (not under TYPE_CHECKING)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    yield child.lineno, a.name
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (child.level - 1)]
                    base = ".".join([*pkg, base] if base else pkg)
                # ``from causalmem import charts`` imports the submodule when it is one
                for a in child.names:
                    yield child.lineno, f"{base}.{a.name}" if base.count(".") == 0 else base
            stack.append(child)


def _rank(module: str, layers: Sequence[Sequence[str]]) -> int | None:
    for i, layer in enumerate(layers):
        for prefix in layer:
            if module == prefix or module.startswith(prefix + "."):
                return i
    return None


def violations(root: Path, packages: Sequence[str] = ("causalmem", "steer", "lmecon")) -> list[str]:
    """Every import that breaks :data:`LAYERS` or :data:`FORBIDDEN`, as readable lines."""
    out: list[str] = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            module = _module_name(path, root)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for line, target in _imports(tree, module, path.name == "__init__.py"):
                top = target.split(".")[0]
                where = f"{path.relative_to(root)}:{line}: {module} imports {target}"
                if top in FORBIDDEN.get(pkg, ()):
                    out.append(f"{where} ({pkg} must not import {top})")
                    continue
                layers = LAYERS.get(pkg)
                if top != pkg or layers is None or module == pkg:
                    continue
                mine, theirs = _rank(module, layers), _rank(target, layers)
                if mine is None:
                    out.append(f"{where} ({module} is in no layer: add it to LAYERS)")
                elif theirs is not None and theirs > mine:
                    out.append(f"{where} (layer {mine} imports higher layer {theirs})")
    return out


def test_no_layer_imports_a_higher_one() -> None:
    found = violations(ROOT)
    assert not found, "layering violations:\n" + "\n".join(found)


def test_the_checker_finds_a_planted_violation(tmp_path: Path) -> None:
    for rel, text in {
        "causalmem/__init__.py": "",
        "causalmem/results/__init__.py": "",
        "causalmem/results/attgt.py": "from causalmem.estimators.aggte import aggte\n",
        "causalmem/estimators/__init__.py": "",
        "causalmem/estimators/aggte.py": "from causalmem.results import attgt\n",
        "steer/__init__.py": "",
        "steer/core/__init__.py": "def f():\n    import causalmem\n",
        # a type-only import is not a runtime dependency: not reported
        "lmecon/__init__.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import steer\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = violations(tmp_path)
    assert len(found) == 2, found
    assert "causalmem.results.attgt imports causalmem.estimators.aggte" in found[0]
    assert "steer must not import causalmem" in found[1]


@pytest.mark.parametrize(
    ("package", "banned"),
    [("causalmem", HEAVY), ("steer", (*HEAVY, "causalmem")), ("lmecon", (*HEAVY, "causalmem"))],
)
def test_importing_a_package_is_light(package: str, banned: tuple[str, ...]) -> None:
    code = (
        f"import sys, {package}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {banned!r})\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import {package} loaded {out.stdout.strip()}"
