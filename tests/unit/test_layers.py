"""The packages form layers: each imports only the layers below it, so there is no package cycle.

    canonical < foundation < actors < adapters < streams < cluster < bench

``proto`` (generated stubs) is imported by adapters and above. Inside ``cluster``, only the command line
(``cluster.cli``) may import ``cluster.cli``: the stack, the demo and the report are libraries the commands
call, never the other way round. Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("canonical", "foundation", "actors", "adapters", "streams", "cluster", "bench")
# proto is generated and imports nothing of ours; adapters are the lowest layer that speaks gRPC.
LOWEST_USER = {"proto": "adapters"}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def _modules(package: str) -> list[Path]:
    return sorted(
        p for p in (ROOT / package).rglob("*.py") if not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    )


def _violations() -> list[str]:
    rank = {name: n for n, name in enumerate(LAYERS)}
    found: list[str] = []
    for package in LAYERS:
        for path in _modules(package):
            where = path.relative_to(ROOT)
            for line, module in _imports(path):
                top = module.split(".")[0]
                if top in rank and rank[top] > rank[package]:
                    found.append(f"{where}:{line} imports {module} ({package} is below {top})")
                if top in LOWEST_USER and rank[package] < rank[LOWEST_USER[top]]:
                    found.append(f"{where}:{line} imports {module} (only {LOWEST_USER[top]} and above may)")
                in_cli = where.parts[:2] == ("cluster", "cli")
                if (module == "cluster.cli" or module.startswith("cluster.cli.")) and not in_cli:
                    found.append(f"{where}:{line} imports {module} (only the command line imports it)")
    return found


def test_no_layer_imports_a_layer_above_it() -> None:
    violations = _violations()
    assert not violations, "imports against the layering:\n" + "\n".join(violations)


def test_every_package_is_in_a_layer() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "proto"}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"


@pytest.mark.parametrize("package", LAYERS)
def test_layer_has_modules(package: str) -> None:
    # A renamed package would make the layering test check nothing for it.
    assert _modules(package), f"no modules found in {package}/"
