"""X12 parse-and-canonicalise throughput: hcsync against pyx12, same run, same input (issue 14, item 9).

    .venv/bin/python -m bench.x12_throughput [--claims 1000] [--seed 5] [--repeat 3] [--corpus DIR]

hcsync is measured doing the whole job: splitting the bytes into interchanges with their own delimiters
(envelope.py), x12sdk's models of each set, the balances, and the canonical pydantic models
(``read_interchange``). The baseline is pyx12's map-aware claim tree (``X12ContextReader``, loop 2300 of
an 837, 2100 of an 835), with its XML maps memoised as a long-lived worker would, reading the claim id,
the charge and the line charges of every claim: less work than hcsync does, so the comparison flatters
pyx12.

Inputs: an 837P (005010X222A1) generated from a seed with string templates (2 to 4 lines per claim, a
quarter of the claims for a dependent), and the corpus files (``--corpus``, default ``../shared/corpus``)
whose sets both read: the 837 errata X222A2 and X223A3 are given to pyx12 as X222A1 and X223A2, the
guides it has maps for (same loops). Best of ``--repeat`` passes after a warm-up; one core.
"""

from __future__ import annotations

import argparse
import functools
import io
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyx12.error_handler
import pyx12.errors
import pyx12.map_if
import pyx12.params
import pyx12.x12context
from rich.console import Console
from rich.table import Table

from canonical.errors import DecodeError
from canonical.revenue_cycle import Remittance
from canonical.x12.envelope import read_interchanges
from canonical.x12.read import ReadStatus, read_interchange

__all__ = ["generate_837p", "main"]

_CORPUS_ENV = "HCSYNC_CORPUS_DIR"
_DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
# The guide pyx12 4.0.0 has a map for, for each guide hcsync reads (errata share their loops).
_NEAREST = {
    "005010X222A1": "005010X222A1",
    "005010X222A2": "005010X222A1",
    "005010X223A2": "005010X223A2",
    "005010X223A3": "005010X223A2",
    "005010X221A1": "005010X221A1",
}
_DEPENDENT_SHARE = 0.25
_MIN_LINES, _MAX_LINES = 2, 4
_MIN_CHARGE_CENTS, _MAX_CHARGE_CENTS = 2_500, 90_000


def generate_837p(claims: int = 1000, seed: int = 5) -> tuple[str, int]:
    """An 837P interchange (005010X222A1) of ``claims`` claims, the same for the same seed.

    Returns the text and the number of claims. Every claim balances (CLM02 = its lines), the billing
    provider has a 9-digit ZIP and an NPI, and pyx12 validates the file without errors.
    """
    rnd = random.Random(seed)
    segments = [
        "ST*837*0001*005010X222A1",
        "BHT*0019*00*BATCH0001*20261205*1200*CH",
        "NM1*41*2*GENERAL HOSPITAL BILLING*****46*TGJ23",
        "PER*IC*BILLING OFFICE*TE*5555551234",
        "NM1*40*2*EXAMPLE PAYER*****46*66783JJT",
        "HL*1**20*1",
        "PRV*BI*PXC*207Q00000X",
        "NM1*85*2*GENERAL HOSPITAL*****XX*1234567893",
        "N3*100 MAIN ST",
        "N4*SPRINGFIELD*IL*627010001",
        "REF*EI*123456789",
    ]
    hl = 1
    for number in range(claims):
        dependent = rnd.random() < _DEPENDENT_SHARE
        hl += 1
        subscriber_hl = hl
        segments += [
            f"HL*{hl}*1*22*{1 if dependent else 0}",
            f"SBR*P*{'' if dependent else '18'}*GRP{number % 50:04d}******CI",
            f"NM1*IL*1*DOE{number}*JOHN****MI*M{number:09d}",
            "N3*1 ELM ST",
            "N4*SPRINGFIELD*IL*62701",
            "DMG*D8*19700101*M",
            "NM1*PR*2*EXAMPLE PAYER*****PI*66783JJT",
        ]
        if dependent:
            hl += 1
            segments += [
                f"HL*{hl}*{subscriber_hl}*23*0",
                "PAT*19",
                f"NM1*QC*1*DOE{number}*JANE",
                "N3*1 ELM ST",
                "N4*SPRINGFIELD*IL*62701",
                "DMG*D8*20100101*F",
            ]
        charges = [
            Decimal(rnd.randint(_MIN_CHARGE_CENTS, _MAX_CHARGE_CENTS)) / 100
            for _ in range(rnd.randint(_MIN_LINES, _MAX_LINES))
        ]
        segments += [f"CLM*ACCT{number:07d}*{sum(charges)}***11:B:1*Y*A*Y*Y", "HI*ABK:J069*ABF:R509"]
        for line, charge in enumerate(charges, 1):
            segments += [f"LX*{line}", f"SV1*HC:9921{line}*{charge}*UN*1***1:2", "DTP*472*D8*20261201"]
    segments.append(f"SE*{len(segments) + 1}*0001")
    isa = (
        "ISA*00*          *00*          *ZZ*HCSYNC         *ZZ*EXAMPLEPAYER   *261205*1200*^*00501*"
        "000000101*1*T*:"
    )
    body = [isa, "GS*HC*HCSYNC*EXAMPLEPAYER*20261205*1200*101*X*005010X222A1", *segments]
    body += ["GE*1*101", "IEA*1*000000101"]
    return "~\n".join(body) + "~\n", claims


@dataclass(frozen=True, slots=True)
class Result:
    """One implementation's best pass over one input."""

    name: str
    segments: int
    claims: int
    seconds: float

    def per_second(self, count: int) -> float:
        return count / self.seconds if self.seconds else 0.0


def _best(work: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Run ``work`` once to warm up, then ``repeat`` times; the best time and the claims it counted."""
    claims = work()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        claims = work()
        best = min(best, time.perf_counter() - started)
    return best, claims


def hcsync_read(files: Sequence[bytes]) -> int:
    """hcsync's parse-and-canonicalise of every file; the number of claims it mapped."""
    claims = 0
    for data in files:
        for interchange in read_interchanges(data):
            for reading in read_interchange(interchange):
                if reading.status is not ReadStatus.MAPPED:
                    continue
                for model in reading.models:
                    claims += len(model.claims) if isinstance(model, Remittance) else 1
    return claims


def memoise_pyx12_maps() -> None:
    """pyx12 re-parses its XML maps on every reader (0.3-1.4 s a file): memoise them, as a worker must.

    Keyed by map file and map path only: every reader passes a new ``params`` object, which the maps do
    not depend on (docs/x12-research.md checked the outputs equal with and without the cache).
    """
    original = pyx12.map_if.load_map_file
    maps: dict[tuple[str, str | None], object] = {}

    @functools.wraps(original)
    def cached(map_file: str, param: object, map_path: str | None = None) -> object:
        key = (map_file, map_path)
        if key not in maps:
            maps[key] = original(map_file, param, map_path)
        return maps[key]

    pyx12.map_if.load_map_file = cached
    pyx12.x12context.map_if.load_map_file = cached


def pyx12_tree(texts: Sequence[str]) -> int:
    """pyx12's claim tree of every interchange, reading each claim's id, charge and line charges."""
    claims = 0
    param = pyx12.params.params()
    for text in texts:
        errh = pyx12.error_handler.err_handler()
        found = 0
        with pyx12.x12context.X12ContextReader(param, errh, io.StringIO(text)) as reader:
            for node in reader.iter_segments("2300"):
                if node.id == "2300" and node.get_value("CLM01") is not None:
                    lines = [n.get_value("SV102") for n in node.select("2400/SV1")]
                    lines += [n.get_value("SV203") for n in node.select("2400/SV2")]
                    _ = (node.get_value("CLM02"), sum(Decimal(v or 0) for v in lines))
                    found += 1
        if not found:  # no 837 claim: an 835, whose claims are 2100 loops
            with pyx12.x12context.X12ContextReader(param, errh, io.StringIO(text)) as reader:
                for node in reader.iter_segments("2100"):
                    if node.id == "2100":
                        _ = (node.get_value("CLP01"), node.get_value("CLP03"), node.get_value("CLP04"))
                        found += 1
        claims += found
    return claims


def corpus_inputs(root: Path) -> tuple[list[bytes], list[str], int]:
    """The corpus files whose every interchange pyx12 maps (as its nearest guide) and hcsync reads.

    Returns the files' bytes, pyx12's interchange texts and the segment count.
    """
    files: list[bytes] = []
    texts: list[str] = []
    segments = 0
    folder = root / "x12"
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        data = path.read_bytes()
        try:
            interchanges = read_interchanges(data, path.name)
        except DecodeError:
            continue
        guides = [group.version for x in interchanges for group in x.groups]
        if not guides or any(guide not in _NEAREST for guide in guides):
            continue
        rewritten = [x.text.replace(x.groups[0].version, _NEAREST[x.groups[0].version]) for x in interchanges]
        try:
            pyx12_tree(rewritten)
        except pyx12.errors.EngineError:
            continue
        files.append(data)
        texts += rewritten
        segments += sum(_segment_count(x.text, x.delimiters.segment) for x in interchanges)
    return files, texts, segments


def _segment_count(text: str, terminator: str) -> int:
    return sum(1 for part in text.split(terminator) if part.strip())


def _table(console: Console, title: str, results: list[Result]) -> None:
    table = Table(title=title)
    for column in (
        "implementation",
        "segments",
        "claims",
        "seconds",
        "segments/s",
        "claims/s",
        "hcsync x faster",
    ):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    ours = results[0]
    for result in results:
        ratio = ours.per_second(ours.segments) / result.per_second(result.segments) if result.seconds else 0.0
        table.add_row(
            result.name,
            f"{result.segments:,}",
            f"{result.claims:,}",
            f"{result.seconds:.3f}",
            f"{result.per_second(result.segments):,.0f}",
            f"{result.per_second(result.claims):,.0f}",
            f"{ratio:.2f}",
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=1000, help="claims in the generated 837P (>= 1000)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--corpus",
        type=Path,
        default=Path(os.environ.get(_CORPUS_ENV) or _DEFAULT_CORPUS),
        help=f"the corpus folder holding x12/ (default ${_CORPUS_ENV}, else ../shared/corpus)",
    )
    args = parser.parse_args(argv)
    logging.getLogger("pyx12").setLevel(logging.CRITICAL)  # pyx12 logs every finding at ERROR
    memoise_pyx12_maps()
    console = Console()

    text, generated = generate_837p(args.claims, args.seed)
    data = text.encode()
    segments = _segment_count(text, "~")
    console.print(f"generated 837P: {generated:,} claims, {segments:,} segments, {len(data):,} bytes")
    ours_s, ours_claims = _best(lambda: hcsync_read([data]), args.repeat)
    theirs_s, theirs_claims = _best(lambda: pyx12_tree([text]), args.repeat)
    _table(
        console,
        f"X12 837P, {generated:,} claims (one core, best of {args.repeat})",
        [
            Result("hcsync: envelope + x12sdk + canonical models", segments, ours_claims, ours_s),
            Result("pyx12: X12ContextReader claim tree (maps memoised)", segments, theirs_claims, theirs_s),
        ],
    )

    files, texts, corpus_segments = corpus_inputs(args.corpus)
    if not files:
        console.print(f"no corpus at {args.corpus}: corpus figures skipped")
        return
    console.print(f"corpus: {len(files)} files (837P, 837I, 835) both read, {corpus_segments:,} segments")
    ours_s, ours_claims = _best(lambda: hcsync_read(files), args.repeat)
    theirs_s, theirs_claims = _best(lambda: pyx12_tree(texts), args.repeat)
    _table(
        console,
        f"X12 corpus (one core, best of {args.repeat}); claims: those each mapped",
        [
            Result("hcsync: envelope + x12sdk + canonical models", corpus_segments, ours_claims, ours_s),
            Result(
                "pyx12: X12ContextReader claim tree (maps memoised)", corpus_segments, theirs_claims, theirs_s
            ),
        ],
    )


if __name__ == "__main__":
    main()
