"""SQL helpers every store of hcsync shares: an engine (SQLite in WAL mode by default, PostgreSQL by URL),
one transaction per unit of work with a rerun when a concurrent writer wins a unique-key race, chunked
IN clauses, overflow-free sums, and additive schema migration.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    cast,
    create_engine,
    event,
    func,
    inspect,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateColumn
from sqlalchemy.sql import ColumnExpressionArgument
from sqlalchemy.types import TypeDecorator

from canonical.errors import ConfigurationError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "UtcDateTime",
    "create_schema",
    "distinct",
    "in_chunks",
    "int64",
    "joined",
    "open_engine",
    "read_transaction",
    "reading",
    "sqlite_path",
    "total",
    "utc",
    "write_transaction",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# An option set on read-only connections so SQLite opens them with a deferred BEGIN (no write lock).
_READ_ONLY = "hcsync_read_only"
# How long a SQLite writer waits for the write lock before giving up with "database is locked".
_SQLITE_BUSY_TIMEOUT_S = 30.0
# Attempts of one call when concurrent writers keep winning unique-constraint races against it.
_WRITE_ATTEMPTS = 5
# Rows per IN (...) clause: far below SQLite's bound-parameter limit.
_CHUNK = 500


def in_chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    """Yield ``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def open_engine(
    database_url: str, *, durable: bool = False, busy_timeout_s: float = _SQLITE_BUSY_TIMEOUT_S
) -> Engine:
    """Open a SQLAlchemy engine: SQLite files get WAL and write-locking transactions, others as is.

    ``durable`` makes every SQLite commit reach the disk before it returns (``synchronous=FULL``): what a
    store that acknowledges on commit needs. Otherwise WAL's ``NORMAL`` may lose the last commits on a
    power cut, never on a process crash. ``busy_timeout_s`` is how long a SQLite writer waits for the lock.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        # hide_parameters keeps row values (PHI in billing) out of error messages and logs.
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if not url.database or url.database == ":memory:":
        # Every pooled connection to :memory: would see its own empty database.
        raise ConfigurationError(f"SQLite database must be a file, got {database_url!r}")
    Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
    )
    synchronous = "FULL" if durable else "NORMAL"

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        _sqlite_on_connect(dbapi_connection, synchronous)

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, synchronous: str) -> None:
    """Put a new SQLite connection in WAL mode and let SQLAlchemy, not the driver, open transactions."""
    # The driver's own implicit BEGIN is deferred; the begin hook below issues the one we want.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    """Begin a SQLite transaction, taking the write lock up front unless the connection only reads."""
    # A deferred transaction that reads and then writes fails with SQLITE_BUSY, without waiting, when
    # another writer committed in between; BEGIN IMMEDIATE waits for the lock instead.
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def write_transaction(engine: Engine, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction, committed on return; rerun it when a concurrent writer won a race."""
    for attempt in range(1, _WRITE_ATTEMPTS + 1):
        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                return work(session)
        except IntegrityError:
            # Another call inserted the same key between our read and our write; rerunning the work
            # reads its rows and answers as a replay. The database, not this process, decided.
            if attempt == _WRITE_ATTEMPTS:
                raise
            log.info("unique-key race lost, rerunning the transaction (attempt %d)", attempt)
    raise AssertionError("unreachable: the loop returns or raises")


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only: on SQLite its transaction is deferred and never takes the write lock.

    A plain ``engine.connect()`` begins with BEGIN IMMEDIATE (the begin hook), so a read would queue for the
    write lock behind every writer and hold it against them.
    """
    with engine.connect() as connection:
        connection.execution_options(**{_READ_ONLY: True})
        yield connection


def read_transaction(engine: Engine, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one read-only transaction, so every query sees the same snapshot."""
    with Session(engine) as session:
        # Procuring the connection first carries the option to the begin hook; closing rolls back.
        session.connection(execution_options={_READ_ONLY: True})
        return work(session)


def distinct(values: Iterable[str]) -> list[str]:
    """Return ``values`` without repeats, in first-seen order."""
    return list(dict.fromkeys(values))


# Each summed value is split into its high and low 32-bit halves, summed apart: neither sum can overflow
# a 64-bit integer below 2**31 rows, and the halves join again exactly in Python (see ``total``).
_HALF_BITS = 32
_LOW_MASK = (1 << _HALF_BITS) - 1
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def total(expression: ColumnExpressionArgument[int]) -> tuple[ColumnElement[int], ColumnElement[int]]:
    """Return SUM(expression) as two BIGINT columns that never overflow: join them with :func:`joined`.

    SQLite's SUM raises "integer overflow" past 2**63 - 1, and PostgreSQL's SUM of a BIGINT is a NUMERIC
    that arrives as a Decimal: one row too many would fail every totals call for good. So the high half
    (``expression >> 32``, sign kept) and the low half (``expression & 0xFFFFFFFF``, 0 to 2**32 - 1) are
    summed apart, each a 64-bit integer whatever the values, and :func:`joined` rebuilds the exact sum.
    A float sum (SQLite ``total()``) is not an option: it rounds cents above 2**53.
    """
    column = cast(expression, BigInteger)
    high = cast(func.coalesce(func.sum(column.op(">>")(_HALF_BITS)), 0), BigInteger)
    low = cast(func.coalesce(func.sum(column.op("&")(_LOW_MASK)), 0), BigInteger)
    return high, low


def joined(high: int, low: int) -> int:
    """Return the exact sum whose halves :func:`total` computed (a Python integer: it may exceed int64)."""
    return (int(high) << _HALF_BITS) + int(low)


def int64(value: int, what: str) -> int:
    """Return ``value`` clamped to a signed 64-bit integer, as a protobuf int64 field holds it.

    Only rows written before the adapters bounded amounts can add up past it; the log says which total.
    """
    if INT64_MIN <= value <= INT64_MAX:
        return value
    log.warning("%s exceeds a 64-bit integer: reported at the bound (rows beyond the amount bounds)", what)
    return INT64_MAX if value > 0 else INT64_MIN


def create_schema(engine: Engine, metadata: MetaData) -> None:
    """Create missing tables, and add to existing tables the columns a later release defined.

    A column added after a table's first release needs a server default (or must be nullable), so the
    rows of an older database get a value. Safe when several processes open the same database at once.
    """
    # Inspected first, through a reading connection: opening a current database writes nothing, so a
    # command that only reads does not wait for the write lock of a busy database.
    with reading(engine) as connection:
        inspector = inspect(connection)
        existing = set(inspector.get_table_names())
        columns = {name: {c["name"] for c in inspector.get_columns(name)} for name in existing}
        indexes = {name: {i["name"] for i in inspector.get_indexes(name)} for name in existing}
    missing = [table for table in metadata.sorted_tables if table.name not in existing]
    if missing:
        metadata.create_all(engine, tables=missing)  # whole: with their columns and indexes
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue
        present = columns[table.name]
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable and column.server_default is None:
                # A programming error, caught by the first test that opens an old database.
                raise RuntimeError(f"{table.name}.{column.name} is NOT NULL without a server default")
            ddl = CreateColumn(column).compile(dialect=engine.dialect)
            quoted = engine.dialect.identifier_preparer.quote(table.name)
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql(f"ALTER TABLE {quoted} ADD COLUMN {ddl}")
            except DBAPIError:
                # Another process opening the same database may have added it first.
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
            log.info("added column %s.%s", table.name, column.name)
        for index in table.indexes:  # create_all adds the indexes of new tables only
            if index.name not in indexes[table.name]:
                index.create(engine, checkfirst=True)


def utc(value: dt.datetime) -> dt.datetime:
    """Return an aware UTC datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = utc(value)
        # SQLite keeps timestamps as text with no zone: store naive UTC so text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else utc(value)


def sqlite_path(database_url: str) -> Path | None:
    """Return the file of a SQLite URL, or None for another database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database).expanduser()
