"""`hcsync demo` runs with TLS and bearer tokens on and still reconciles (issue 13).

The demo starts its own embedded stack (on free ports, beside the session's), which makes a CA,
certificates and tokens for the run; the adapters serve TLS with client certificates and tokens, the
worker posts with its write token, and the reconciliation reads with the read-only one. A smaller day
than `make demo` (which uses 200 encounters) keeps the suite short; the governance act runs too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from cluster.demo import run_demo
from tests.integration.conftest import stack_settings


@pytest.mark.timeout(900)
def test_the_demo_reconciles_with_tls_and_tokens_on(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "home", transform_batch_window_s=0.2)
    assert not settings.grpc_insecure and settings.grpc_ca_file is None  # the stack makes its own
    console = Console(record=True, width=160)
    ok = run_demo(settings, encounters=40, seed=11, timeout_s=600, console=console, late_charges=1)
    output = console.export_text()
    assert ok, output[-3000:]
    assert "agree" in output, output[-3000:]
    [run_dir] = (tmp_path / "home" / "runs").glob("*-demo-*")
    credentials = run_dir / "grpc"
    assert (credentials / "ca.crt").is_file() and (credentials / "worker.token").is_file()
    for service in ("billing", "erp"):
        log = (run_dir / f"{service}.log").read_text("utf-8")
        assert f"ready: {service} adapter on" in log and "(TLS, bearer tokens)" in log, log[-2000:]
        assert "PLAINTEXT" not in log
    # Every private key the run wrote is its owner's alone.
    private = [path for path in credentials.iterdir() if path.suffix in (".key", ".token")]
    assert private and all(path.stat().st_mode & 0o077 == 0 for path in private), private
