"""Parse-and-canonicalise throughput: hcsync's fast path against hl7apy and python-hl7, same run, same input.

    .venv/bin/python -m bench.parse_throughput [--encounters N] [--hl7apy-sample N]

The input is a synthetic hospital day (ADT and DFT^P03, the messages with a financial effect). hcsync is
measured doing the whole job (decode, parse, map to canonical events, validate the pydantic models), and
again with the master-data enrichment the transform actors add (ERP dimensions from the shipped demo
set); the baselines only parse and read the same fields, so the comparison flatters them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import hl7
from hl7apy.parser import parse_message as hl7apy_parse
from rich.console import Console
from rich.table import Table

from actors.enrich import enrich
from canonical.hl7v2.mapping import canonicalize
from canonical.hl7v2.parser import parse_message
from canonical.reference import MasterDataSet
from canonical.reference_files import read_set
from cluster.masterdata import DEMO_DIR
from cluster.synth import generate_day


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def measure(name: str, work: Callable[[bytes], object], messages: Sequence[bytes], repeat: int = 1) -> Result:
    """Run ``work`` over every message ``repeat`` times and return the best pass."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for raw in messages:
            work(raw)
        best = min(best, time.perf_counter() - started)
    return Result(name, len(messages), best)


def hcsync_fast_path(raw: bytes) -> object:
    return canonicalize(raw)


def hcsync_enriched(data: MasterDataSet) -> Callable[[bytes], object]:
    def work(raw: bytes) -> object:
        msg = parse_message(raw)
        return enrich(msg, canonicalize(msg), data)

    return work


def python_hl7(raw: bytes) -> object:
    msg = hl7.parse(raw.decode("utf-8").replace("\n", "\r"))
    fields = [
        str(msg.segment("MSH")[10]),
        str(msg.segment("PID")[3][0][0]),
        str(msg.segment("PV1")[19][0][0]),
    ]
    if str(msg.segment("MSH")[9][0][0]) == "DFT":
        fields += [str(seg[11][0][0]) for seg in msg.segments("FT1")]
    return fields


def hl7apy_strict(raw: bytes) -> object:
    msg = hl7apy_parse(raw.decode("utf-8").replace("\n", "\r"), find_groups=False)
    return msg.msh.msh_10.value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encounters", type=int, default=300)
    parser.add_argument("--hl7apy-sample", type=int, default=200, help="hl7apy is slow: messages it parses")
    args = parser.parse_args(argv)
    messages = generate_day(encounters=args.encounters, seed=11).messages
    console = Console()
    console.print(f"input: {len(messages):,} synthetic ADT/DFT messages, {sum(map(len, messages)):,} bytes")
    results = [
        measure("hcsync: parse + canonicalise + validate", hcsync_fast_path, messages, repeat=3),
        measure(
            "hcsync: the same + enrich from master data", hcsync_enriched(read_set(DEMO_DIR)), messages, 3
        ),
        measure("python-hl7: parse + read fields", python_hl7, messages, repeat=3),
        measure("hl7apy: parse_message", hl7apy_strict, messages[: args.hl7apy_sample]),
    ]
    table = Table(title="HL7 v2 parse throughput (one core)")
    table.add_column("implementation")
    table.add_column("messages", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("messages/s", justify="right")
    table.add_column("hcsync is x faster", justify="right")
    ours = results[0].rate
    for result in results:
        ratio = ours / result.rate if result.rate else float("nan")
        table.add_row(
            result.name,
            f"{result.messages:,}",
            f"{result.seconds:.3f}",
            f"{result.rate:,.0f}",
            f"{ratio:,.1f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
