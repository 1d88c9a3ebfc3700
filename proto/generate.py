"""Regenerate the Python stubs of proto/*.proto, or with --check report drift from the committed ones.

Usage: ``python -m proto.generate [--check]``. Stubs are generated exactly as
``protoc -I . --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=.`` run from the project
root, so the generated code imports ``from proto import billing_pb2``.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import sysconfig
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = "proto"
PROTO_FILES = ("billing.proto", "erp.proto", "payer.proto")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _plugin(name: str) -> str:
    """Return the path of a protoc plugin installed next to this interpreter."""
    # The venv's bin/ is not on PATH when the interpreter is called by its full path, so look there first.
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"protoc plugin {name} not found; install mypy-protobuf")
    return found


def generate(root: Path, out_dir: Path) -> list[Path]:
    """Generate the stubs of every proto under ``root``/proto into ``out_dir``; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(root / PROTO_DIR / name) for name in PROTO_FILES),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    return sorted(path for path in (out_dir / PROTO_DIR).iterdir() if path.name.endswith(GENERATED_SUFFIXES))


def _committed(root: Path) -> set[str]:
    """Return the names of the generated files present in ``root``/proto."""
    return {path.name for path in (root / PROTO_DIR).iterdir() if path.name.endswith(GENERATED_SUFFIXES)}


def drift(root: Path = PROJECT_ROOT) -> list[str]:
    """Return the generated files under ``root``/proto that differ from a fresh generation (empty: none)."""
    with tempfile.TemporaryDirectory(prefix="hcsync-proto-") as tmp:
        fresh = generate(root, Path(tmp))
        fresh_names = {path.name for path in fresh}
        problems = []
        for path in fresh:
            committed = root / PROTO_DIR / path.name
            if not committed.is_file():
                problems.append(f"{PROTO_DIR}/{path.name} (missing)")
            elif not filecmp.cmp(path, committed, shallow=False):
                problems.append(f"{PROTO_DIR}/{path.name} (differs)")
        # A stub whose .proto was removed is drift too: it would still import and mislead.
        problems.extend(f"{PROTO_DIR}/{name} (stale)" for name in sorted(_committed(root) - fresh_names))
        return problems


def main(argv: list[str] | None = None) -> int:
    """Regenerate the stubs in place, or with --check exit 1 listing the files that drifted."""
    parser = argparse.ArgumentParser(prog="python -m proto.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the stubs drifted")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(PROJECT_ROOT)
        if problems:
            print("generated stubs drifted from proto/*.proto; run `python -m proto.generate`:")
            for problem in problems:
                print(f"  {problem}")
            return 1
        print("generated stubs are up to date")
        return 0
    written = generate(PROJECT_ROOT, PROJECT_ROOT)
    for path in written:
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
