"""The committed stubs in proto/ match what proto/*.proto generates, and the drift check notices when not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from proto.generate import PROJECT_ROOT, drift

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_the_protos() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proto.generate", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_names_changed_missing_and_stale_stubs(tmp_path: Path) -> None:
    assert PROJECT_ROOT == ROOT
    # A copy of proto/, so the tree other engineers work in is never touched.
    copy = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert drift(tmp_path) == []

    (copy / "erp_pb2.pyi").write_text((copy / "erp_pb2.pyi").read_text() + "\n# hand edit\n")
    (copy / "billing_pb2_grpc.py").unlink()
    (copy / "old_pb2.py").write_text("# generated from a proto that was removed\n")

    assert drift(tmp_path) == [
        "proto/billing_pb2_grpc.py (missing)",
        "proto/erp_pb2.pyi (differs)",
        "proto/old_pb2.py (stale)",
    ]
