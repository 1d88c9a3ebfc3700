"""What every `hcsync` subcommand shares: its consoles, how it fails, and who is running it."""

from __future__ import annotations

import getpass
import socket
import sys

import typer
from rich.console import Console
from rich.markup import escape

# soft_wrap: a one-line error stays one line, whatever the width, so it can be read and grepped.
err_console = Console(stderr=True, soft_wrap=True)
# Piped output is read by tools and people alike: wide enough that no record id is ever cut.
PIPE_WIDTH = 200


def stdout_console() -> Console:
    """Return a console for stdout: the terminal's width, or a wide one when piped."""
    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` in red on stderr and return the Exit to raise."""
    err_console.print(f"[red]{escape(message)}[/]")
    return typer.Exit(code)


def operator() -> str:
    """Return who runs the command, as user@host, for the histories that record it."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


__all__ = ["PIPE_WIDTH", "err_console", "fail", "operator", "stdout_console"]
