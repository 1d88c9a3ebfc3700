"""Fixtures the unit tests share: the billing backend's tests get a SQLite billing database and the backend
over it (a module may define its own ``backend``, as the ERP's tests do)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.billing.backend import SqlBillingBackend


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "billing.db"


@pytest.fixture
def backend(db_path: Path) -> Iterator[SqlBillingBackend]:
    opened = SqlBillingBackend(f"sqlite:///{db_path}")
    try:
        yield opened
    finally:
        opened.close()
