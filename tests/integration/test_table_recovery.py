"""The encounter table survives a worker's death whole on the embedded broker.

The embedded Tansu broker (0.6.0, memory engine) answers ListOffsets "latest" with the first offset of a
partition's newest produce batch plus one; its fetch responses carry the right high watermark. Faust
recovers a table up to ListOffsets' answer, and a table's changelog records go out several per produce
request whenever one is in flight, so a worker taking over partitions used to start from an incomplete
table: events it then applied found no state, and held charges were lost without a trace.

- the defect itself, on the real broker, against the fetch high watermark (this test fails, and says so,
  the day Tansu answers right: the fetch-based end offsets in streams/transport.py may then go);
- a worker that takes over recovers every encounter state of a changelog written in multi-record
  batches: each state holds two charges that wait for the registration, and the registrations, sent
  after the takeover, must release every one of them.

This module runs its own stack: one worker on a one-node Ray cluster it can join a second worker to.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from actors.masterdata import MasterDataStore
from actors.transform import TransformBatch, transform_batch
from canonical.envelope import EventEnvelope
from cluster.send import send_messages
from cluster.stack import Stack, settings_env
from foundation.kafka import fetch_high_watermarks, high_watermarks, producer
from foundation.processes import gone_ok
from foundation.runs import new_run_dir
from foundation.settings import Settings
from streams.encounter_state import EncounterState, apply_event
from streams.posting import PostingRules
from tests.hl7_samples import adt, dft
from tests.integration.conftest import charges, report_now, settle, stack_settings
from tests.integration.postings import postings

SESSION_TIMEOUT_S = 10.0
ENCOUNTERS = 300
BATCH_RECORDS = 25  # changelog records per produce request


@pytest.fixture(scope="module")
def recovery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = stack_settings(
        tmp_path_factory.mktemp("recovery"),
        ray_local_nodes=1,
        transform_replicas=1,
        consumer_session_timeout_s=SESSION_TIMEOUT_S,
    )
    running = Stack(settings, new_run_dir(settings, "recovery"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


# -- the broker's defect ---------------------------------------------------------------------------


async def _produce_and_read(
    settings: Settings, topic: str, batches: list[list[int]]
) -> list[tuple[int, int]]:
    """Write each partition's batches (record counts), one produce request each; return (listed, fetched)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=len(batches), replication_factor=1)])
    finally:
        await admin.close()
    sender = producer(settings)
    await sender.start()
    try:
        for partition, sizes in enumerate(batches):
            for size in sizes:
                batch = sender.create_batch()
                for n in range(size):
                    batch.append(key=b"k%d" % n, value=b"v", timestamp=None)
                await (await sender.send_batch(batch, topic, partition=partition))
    finally:
        await sender.stop()
    tps = [TopicPartition(topic, p) for p in range(len(batches))]
    return await _listed_and_fetched(settings, tps)


def test_the_embedded_broker_lists_a_wrong_end_offset_after_a_multi_record_batch(
    recovery_stack: Stack,
) -> None:
    settings = recovery_stack.settings
    topic = f"{settings.topic_prefix}offsets-probe"
    # Per partition, the records of each produce request.
    batches = [[1, 1, 1, 5], [5, 10], [5, 1, 1, 1], [1]]
    found = asyncio.run(_produce_and_read(settings, topic, batches))
    ends = [sum(sizes) for sizes in batches]
    assert [fetched for _, fetched in found] == ends, f"fetch high watermarks {found}, expected {ends}"
    by_status = asyncio.run(high_watermarks(settings, [topic]))
    assert [by_status[TopicPartition(topic, p)] for p in range(len(batches))] == ends
    # Tansu 0.6.0: the newest batch's first offset plus one; right only when that batch holds one record.
    known_wrong = [sum(sizes[:-1]) + 1 for sizes in batches]
    listed = [listed for listed, _ in found]
    assert listed == known_wrong, (
        f"ListOffsets answered {listed} for end offsets {ends}; Tansu 0.6.0 answered {known_wrong} (the "
        "first offset of the newest batch plus one). If it now answers the true ends, the broker is fixed: "
        "streams/transport.py's fetch-based end offsets for table recovery may go, and this test with them"
    )


# -- a worker's takeover ---------------------------------------------------------------------------


def _held_states(settings: Settings, uid: str) -> dict[str, EncounterState]:
    """Per encounter, the state a worker keeps after its two charges arrived before any registration.

    Built by the product's own steps (transform with the master data in force, then apply_event), so it
    is exactly what the encounters agent would have written to the changelog.
    """
    messages = tuple(
        dft(
            f"D{visit}",
            visit,
            [("CG", "99283", "ED visit", 1, "125.00"), ("CG", "36415", "Draw", 1, "25.00")],
            dept="ED",
        )
        for visit in (f"R{uid}{n:04d}" for n in range(ENCOUNTERS))
    )
    masterdata = MasterDataStore.from_url(settings.redis, settings.topic_prefix).current()
    result = transform_batch(TransformBatch(messages=messages), masterdata)
    rules = PostingRules(
        encounter_ref_key=settings.encounter_ref_key.get_secret_value().encode(), currency=settings.currency
    )
    states: dict[str, EncounterState] = {}
    for outcome in result.outcomes:
        assert outcome.events and outcome.exception is None, f"a test charge did not map: {outcome}"
        for _, value in outcome.events:
            env = EventEnvelope.model_validate_json(value)
            state = states.get(env.encounter_id) or EncounterState(encounter_id=env.encounter_id)
            transition = apply_event(state, env, rules)
            assert transition.held, f"{env.encounter_id}: the charge was not held ({transition})"
            states[env.encounter_id] = transition.state
    assert len(states) == ENCOUNTERS and all(len(s.held_charges) == 2 for s in states.values())
    return states


async def _write_changelog(settings: Settings, states: dict[str, EncounterState]) -> list[tuple[int, int]]:
    """Write states as the table would (JSON key and value, the event's partition), in multi-record batches.

    Return each partition's (ListOffsets end, fetch high watermark) afterwards.
    """
    topic = f"{settings.topic_prefix}{settings.app_id}-encounters-changelog"
    partitions = list(range(settings.topic_partitions))
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in partitions}
    partitioner = DefaultPartitioner()  # the events' partitioner: a state goes where its events go
    for encounter, state in states.items():
        partition = partitioner(encounter.encode(), partitions, partitions)
        record = (json.dumps(encounter).encode(), json.dumps(state.model_dump(mode="json")).encode())
        by_partition[partition].append(record)
    sender = producer(settings)
    await sender.start()
    try:
        for partition, records in by_partition.items():
            for start in range(0, len(records), BATCH_RECORDS):
                batch = sender.create_batch()
                for key, value in records[start : start + BATCH_RECORDS]:
                    assert batch.append(key=key, value=value, timestamp=None) is not None, "batch too small"
                await (await sender.send_batch(batch, topic, partition=partition))
    finally:
        await sender.stop()
    tps = [TopicPartition(topic, p) for p in partitions]
    return await _listed_and_fetched(settings, tps)


@contextmanager
def _another_worker(stack: Stack, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start one more worker of the stack's consumer group, as the stack starts its own; stop it after."""
    settings = stack.settings
    env = (
        os.environ
        | settings_env(settings.model_copy(update={"run_dir": stack.run_dir}))
        | stack.component("worker").env  # joins the stack's Ray cluster
        | {"HCSYNC_WORKER_NAME": name}
    )
    ready = stack.run_dir / f"{name}.ready"
    with (stack.run_dir / f"{name}.log").open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "cluster.cli", "worker"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=Path.cwd(),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + settings.ready_timeout_s
        while not ready.exists():
            assert process.poll() is None, f"{name} exited with {process.returncode}; see {stack.run_dir}"
            assert time.monotonic() < deadline, f"{name} not ready in {settings.ready_timeout_s:.0f}s"
            time.sleep(0.2)
        yield process
    finally:
        with gone_ok():
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=settings.stop_timeout_s)
        except subprocess.TimeoutExpired:
            with gone_ok():
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_a_worker_taking_over_recovers_every_state_of_a_changelog_written_in_batches(
    recovery_stack: Stack,
) -> None:
    settings = recovery_stack.settings
    uid = uuid.uuid4().hex[:6].upper()
    states = _held_states(settings, uid)
    before = settle(settings, 1.0)
    # The running worker recovered its (then empty) changelog at start: what is written now, it never reads.
    ends = asyncio.run(_write_changelog(settings, states))

    # Without a goodbye; the newcomer's first assignment is every partition, once the group lets the dead
    # member go, so it recovers the whole changelog before it applies any registration below.
    first = recovery_stack.component("worker").process
    assert first is not None
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    with _another_worker(recovery_stack, "worker-2"):
        registrations = [
            adt("A04", f"A{visit}", visit, patient_class="O", dept="ED")
            for visit in (f"R{uid}{n:04d}" for n in range(ENCOUNTERS))
        ]
        asyncio.run(send_messages(settings, registrations))
        expected = charges(before)[0] + 2 * ENCOUNTERS
        deadline = time.monotonic() + SESSION_TIMEOUT_S * 6 + 120
        while charges(report_now(settings))[0] < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        after = settle(settings, 2.0)
        found = charges(after)[0] - charges(before)[0]
        detail = postings(recovery_stack.run_dir, f"%R{uid}%").explain(sorted(states), charges_each=2)
        assert found == 2 * ENCOUNTERS, (
            f"the worker that took over released {found} of {2 * ENCOUNTERS} held charges of {ENCOUNTERS} "
            f"encounters whose states were written in batches of {BATCH_RECORDS} (per changelog partition, "
            f"ListOffsets end and fetch high watermark: {ends}). {detail}. Logs: {recovery_stack.run_dir}"
        )
        released = after.counters.get("held_released", 0) - before.counters.get("held_released", 0)
        print(
            f"\nchangelog (ListOffsets end, fetch high watermark) per partition: {ends}; "
            f"{released} held charges released, {found} posted"
        )


async def _listed_and_fetched(settings: Settings, tps: list[TopicPartition]) -> list[tuple[int, int]]:
    """Return each partition's end offset as ListOffsets says it, and as a fetch's high watermark does."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap)
    await consumer.start()
    try:
        listed = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    fetched = await fetch_high_watermarks(settings.bootstrap, tps)
    return [(listed[tp], fetched[tp]) for tp in tps]
