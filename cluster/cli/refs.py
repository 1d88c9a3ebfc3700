"""`hcsync refs`: from an ERP line's encounter reference back to the encounter (a PHI read, audited)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from canonical.errors import HcsyncError
from cluster.cli.audit import ReasonOption, record_access
from cluster.cli.console import fail, stdout_console
from cluster.refs import resolve_ref
from foundation.settings import get_settings

__all__ = ["refs_app"]

refs_app = typer.Typer(
    help="Resolve pseudonymous encounter references (ENC-...) of ERP lines to encounters.",
    no_args_is_help=True,
)


@refs_app.callback()
def _group() -> None:
    """Resolve pseudonymous encounter references (a PHI read, audited)."""
    # A callback makes this a group even with one command, so `hcsync refs resolve` keeps its name.


@refs_app.command()
def resolve(
    ref: Annotated[str, typer.Argument(help="The reference, as the ERP shows it: ENC-<key id>-<hmac>.")],
    reason: ReasonOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find the encounter an encounter reference stands for, among billing's encounters (audited).

    The reference names its key; one made with an earlier key resolves while that key is in
    HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS.
    """
    try:
        encounter_id = resolve_ref(get_settings(), ref)
    except HcsyncError as exc:
        raise fail(str(exc)) from None
    shown = ref.strip()
    if encounter_id is None:
        record_access("refs resolve", [shown], "not found", reason)
        raise fail(f"{shown} matches no encounter billing knows (with the key it names)", 1)
    # Recorded before the encounter is shown; nothing is shown when it cannot be recorded.
    record_access("refs resolve", [shown], "shown", reason)
    if as_json:
        sys.stdout.write(json.dumps({"ref": shown, "encounter_id": encounter_id}) + "\n")
        return
    stdout_console().print(f"{shown} is encounter {encounter_id}", highlight=False, markup=False)
