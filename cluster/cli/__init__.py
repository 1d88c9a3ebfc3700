"""The `hcsync` command line: one module per command group, the top-level commands in main."""

from cluster.cli.main import app, main

__all__ = ["app", "main"]
