"""Master data in a real Redis, and governance on the running stack.

- the store loads versions atomically (a reader never sees a pointer without its set), refuses to change a
  loaded version's content, rolls back, and the actors' cache follows the version in force;
- `hcsync masterdata validate|diff|load|activate|status` work against Redis;
- on the stack: a charge with an unmapped code is quarantined before billing or the ERP see anything; after
  the mapping is added (a new version, loaded while the worker runs) and the message is replayed, it posts
  with the new revenue account, and a second replay posts nothing more.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from actors.masterdata import MasterDataCache, MasterDataConflict, MasterDataStore, MasterDataUnavailable
from canonical.errors import ConfigurationError
from canonical.hl7v2.mapping import canonicalize
from canonical.reference import ChargeCode, MasterDataSet
from canonical.reference_files import write_set
from cluster.cli.masterdata import masterdata_app
from cluster.send import send_messages
from cluster.stack import settings_env
from foundation.settings import Settings, get_settings
from streams.quarantine_store import QuarantineItem, QuarantineStore
from tests.hl7_samples import adt, dft
from tests.integration.conftest import (
    charges,
    free_port,
    settle,
    wait_for_charges,
    wait_for_counter,
    wait_until,
)
from tests.masterdata import demo_set
from tests.redis_server import redis_server


def _uid() -> str:
    return uuid.uuid4().hex[:8].upper()


def _version(data: MasterDataSet, version: str, **domains: object) -> MasterDataSet:
    return data.model_copy(
        update={"manifest": data.manifest.model_copy(update={"version": version}), **domains}
    )


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of our own for store tests that must not touch the stack."""
    with redis_server() as url:
        yield url


@pytest.fixture
def store(redis_url: str) -> MasterDataStore:
    return MasterDataStore.from_url(redis_url, prefix=f"t{_uid()}.")


def test_load_get_and_reload(store: MasterDataStore) -> None:
    data = demo_set()
    assert store.current_version() is None and store.current() is None
    first = store.load(data, loaded_by="test")
    assert (first.version, first.previous, first.changed) == (data.version, None, True)
    assert store.current() == data
    again = store.load(data, loaded_by="test")
    assert not again.changed and again.previous == data.version


def test_a_loaded_version_cannot_change_content(store: MasterDataStore) -> None:
    data = demo_set()
    store.load(data, loaded_by="test")
    changed = data.model_copy(update={"payers": data.payers[1:]})
    with pytest.raises(MasterDataConflict, match="already loaded with different content"):
        store.load(changed, loaded_by="test")
    assert store.current() == data


def test_an_inconsistent_set_is_never_loaded(store: MasterDataStore) -> None:
    data = demo_set()
    bad = _version(data, "bad-1", payers=(*data.payers, data.payers[0]))
    with pytest.raises(ConfigurationError, match=r"master data bad-1 is inconsistent: "):
        store.load(bad, loaded_by="test")
    assert store.current_version() is None


def test_activate_rolls_back_and_history_records_it(store: MasterDataStore) -> None:
    v1 = demo_set()
    v2 = _version(v1, "v2-test", payers=v1.payers[1:])
    store.load(v1, loaded_by="alice")
    store.load(v2, loaded_by="bob")
    assert store.current_version() == "v2-test"
    result = store.activate(v1.version, by="carol")
    assert (result.version, result.previous, result.changed) == (v1.version, "v2-test", True)
    assert store.current() == v1
    assert [entry["version"] for entry in store.history()] == [v1.version, "v2-test", v1.version]
    assert [entry["by"] for entry in store.history()] == ["carol", "bob", "alice"]
    assert {info.version: info.current for info in store.versions()} == {v1.version: True, "v2-test": False}


def test_readers_never_see_a_half_loaded_version(store: MasterDataStore) -> None:
    """New versions are loaded one after another while readers follow the pointer: every read finds a
    whole set whose version is the pointer's, and whose content is that version's."""
    base = demo_set()
    payers = len(base.payers)
    stop = threading.Event()
    seen: list[str] = []
    broken: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            version = store.current_version()
            if version is None:
                continue
            data = store.get(version)
            # Version n keeps payers[n % 5:], so a set with another version's content is caught too.
            n = int(version.rsplit("-", 1)[1])
            if data is None or data.version != version or len(data.payers) != payers - n % 5:
                broken.append(version)
            seen.append(version)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for n in range(30):
            store.load(_version(base, f"load-{n}", payers=base.payers[n % 5 :]), loaded_by="test")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not broken and len(set(seen)) > 5


def test_a_lost_set_is_written_again_by_the_next_load(store: MasterDataStore) -> None:
    data = demo_set()
    store.load(data, loaded_by="test")
    store._redis.delete(store._key("set", data.version))  # evicted or flushed
    assert store.current_version() == data.version and store.current() is None
    result = store.load(data, loaded_by="test")
    assert not result.changed and store.current() == data
    assert [entry["version"] for entry in store.history()] == [data.version]


def test_the_actor_cache_follows_the_version_in_force(store: MasterDataStore, redis_url: str) -> None:
    cache = MasterDataCache(store)
    with pytest.raises(MasterDataUnavailable, match="no master data is loaded"):
        cache.current()
    v1 = demo_set()
    store.load(v1, loaded_by="test")
    assert cache.current() is cache.current() and cache.current().version == v1.version
    store.load(_version(v1, "v2-cache"), loaded_by="test")
    assert cache.current().version == "v2-cache"


def test_the_cache_keeps_its_set_when_redis_is_gone(redis_url: str) -> None:
    live = MasterDataStore.from_url(redis_url, prefix=f"t{_uid()}.")
    live.load(demo_set(), loaded_by="test")
    cache = MasterDataCache(live)
    held = cache.current()
    cache._store = MasterDataStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    assert cache.current() is held
    with pytest.raises(MasterDataUnavailable, match="cannot be read"):
        MasterDataCache(cache._store).current()


def _cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(masterdata_app, list(args), env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == code, result.output
    return result.output


def test_the_cli_validates_diffs_loads_and_rolls_back(redis_url: str, tmp_path: Path) -> None:
    env = {"HCSYNC_REDIS_URL": redis_url, "HCSYNC_TOPIC_PREFIX": f"t{_uid()}."}
    v1_dir = write_set(demo_set(), tmp_path / "v1")
    assert "no problems" in _cli(env, "validate", str(v1_dir))
    assert "is now in force" in _cli(env, "load", str(v1_dir))
    assert "already in force" in _cli(env, "load", str(v1_dir))

    data = demo_set()
    first = data.charge_codes[0]
    priced = tuple(
        c.model_copy(update={"price_cents": c.price_cents + 1}) if c.key == first.key else c
        for c in data.charge_codes
    )
    v2_dir = write_set(_version(data, "v2-cli", charge_codes=priced), tmp_path / "v2")
    shown = _cli(env, "diff", str(v2_dir))
    assert first.key in shown and "price_cents" in shown and "1 change(s)" in shown
    assert "nothing loaded" in _cli(env, "load", str(v2_dir), "--dry-run")
    assert "replacing" in _cli(env, "load", str(v2_dir))
    assert "v2-cli" in _cli(env, "status")
    assert "is now in force" in _cli(env, "activate", data.version)
    assert f'"current": "{data.version}"' in _cli(env, "status", "--json")

    # Same version, other content: refused, and the version in force stays.
    write_set(_version(data, "v2-cli"), tmp_path / "v2b")
    assert "different content" in _cli(env, "load", str(tmp_path / "v2b"), code=1)
    (tmp_path / "v2b" / "items.csv").write_text("item_code\nX\n", "utf-8")
    assert "items.csv line 2" in _cli(env, "validate", str(tmp_path / "v2b"), code=1)


# -- on the running stack ---------------------------------------------------------------------------


@pytest.fixture
def stack_store(stack: object) -> Iterator[QuarantineStore]:
    opened = QuarantineStore(f"sqlite:///{stack.run_dir / 'quarantine.db'}")  # type: ignore[attr-defined]
    yield opened
    opened.close()


def _quarantined(store: QuarantineStore, rule: str, message_id: str) -> QuarantineItem:
    [item] = wait_until(
        f"one {rule} quarantine item of message {message_id} (items of the message)",
        lambda: store.list(message_id=message_id, status=None, limit=None),
        done=lambda items: [i.rule for i in items] == [rule],
        show=lambda items: [(i.record_id, i.rule, i.status) for i in items],
    )
    return item


def _send(settings: Settings, *messages: bytes) -> None:
    import asyncio

    asyncio.run(send_messages(settings, list(messages)))


def test_an_unknown_department_is_stopped_before_billing_and_the_erp(
    settings: Settings, stack_store: QuarantineStore
) -> None:
    uid = _uid()
    before = settle(settings)
    _send(settings, dft(f"D{uid}", f"V{uid}", [("CG", "80053", "CMP", 1, "98.00")], dept="NOWHERE"))
    item = _quarantined(stack_store, "MD-DEPARTMENT-UNKNOWN", f"D{uid}")
    assert (item.segment, item.field, item.found) == ("FT1", "FT1-13.1", "NOWHERE")
    assert "departments.csv" in item.fix_hint
    after = settle(settings)
    assert charges(after) == charges(before) and after.ledger == before.ledger


def test_an_unmapped_charge_posts_once_after_the_mapping_is_loaded_and_replayed(
    settings: Settings, stack_store: QuarantineStore, tmp_path: Path
) -> None:
    uid = _uid()
    visit, control = f"V{uid}", f"D{uid}"
    _send(settings, adt("A01", f"A{uid}", visit))
    message = dft(
        control, visit, [("CG", "80053", "CMP", 1, "98.00"), ("CG", "99499", "Unlisted E/M", 1, "10.00")]
    )
    before = settle(settings)
    _send(settings, message)
    item = _quarantined(stack_store, "MD-CHARGE-CODE-UNMAPPED", control)
    assert (item.field, item.found) == ("FT1-7.1", "99499") and "charge_codes.csv" in item.fix_hint
    held = settle(settings)
    assert charges(held) == charges(before), "neither line of the message may post"

    # The fix: a new version with the code mapped to a revenue account of its own, loaded while running.
    env = settings_env(settings)
    current = MasterDataStore.from_url(settings.redis, settings.topic_prefix).current()
    assert current is not None
    lab = current.charge_code("80053")
    assert lab is not None
    account = next(
        a
        for a in current.accounts
        if a.account_type.value == "revenue" and a.active and a.account != lab.revenue_account
    )
    unlisted = ChargeCode(
        code="99499",
        code_system="CPT",
        description="Unlisted evaluation and management service",
        revenue_account=account.account,
        price_cents=1_000,
    )
    fixed = _version(current, f"{current.version}-fix{uid}", charge_codes=(*current.charge_codes, unlisted))
    assert "is now in force" in _cli(env, "load", str(write_set(fixed, tmp_path / "fixed")))

    def replay(*args: str) -> str:
        from cluster.cli.exceptions import exceptions_app

        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(exceptions_app, ["replay", *args], env=env)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        return result.output

    assert "replayed 1 item(s)" in replay(
        "--rule", "MD-CHARGE-CODE-UNMAPPED", "--message-id", control, "--yes"
    )
    count, cents = charges(before)
    wait_for_charges(settings, "the replayed charges", count=count + 2, cents=cents + 10_800, exact=True)
    posted = settle(settings)
    assert charges(posted) == (count + 2, cents + 10_800)
    replayed = stack_store.get(item.record_id)
    assert replayed is not None and replayed.status == "replayed"

    # A second replay of the same item posts nothing more: the event ids are the same. Once the encounter
    # agent has counted each of its events as a duplicate, nothing else of it can be on its way.
    assert "replayed 1 item(s)" in replay(item.record_id)
    events = len(canonicalize(message))
    wait_for_counter(settings, "duplicate_events", posted.counters["duplicate_events"] + events)
    again = settle(settings)
    assert charges(again) == charges(posted) and again.ledger == posted.ledger

    def credited(report: object) -> int:
        rows = report.ledger.get("byAccount", [])  # type: ignore[attr-defined]
        return sum(int(row.get("creditCents", 0)) for row in rows if row.get("account") == account.account)

    assert credited(again) - credited(held) == 1_000, "the 99499 line posts once, to its new revenue account"
