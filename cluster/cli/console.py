"""What every `hcsync` subcommand shares: its consoles, how it fails, and who is running it."""

from __future__ import annotations

import datetime as dt
import getpass
import json
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


def parse_time(value: str | None, option: str) -> dt.datetime | None:
    """Parse an ISO date or date-time; one without an offset is UTC, like every time the stores show."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date or date-time", param_hint=option) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def when(value: dt.datetime | None) -> str:
    """Render a time as the commands show them: UTC to the second."""
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def readable(original: bytes, *, as_json: bool = False) -> str:
    """Render a stored message for a person: HL7 one segment a line, a JSON document indented."""
    if as_json:
        try:
            return json.dumps(json.loads(original), indent=2, ensure_ascii=False)
        except (ValueError, UnicodeDecodeError):
            pass
    # backslashreplace shows bytes that are not UTF-8 as \xNN instead of hiding or dropping them.
    text = original.decode("utf-8", errors="backslashreplace")
    return "\n".join(text.replace("\r\n", "\r").replace("\n", "\r").rstrip("\r").split("\r"))


__all__ = [
    "PIPE_WIDTH",
    "err_console",
    "fail",
    "operator",
    "parse_time",
    "readable",
    "stdout_console",
    "when",
]
