"""hcsync's reading against pyx12's, on every set pyx12 has a map for and accepts.

pyx12 is the independent oracle: its map-aware tree (``X12ContextReader``) gives the claim loops, and
the figures are read from it here without any hcsync code: claim ids (CLM01/CLP01), CLM02, the lines'
SV102/SV203, CLP04, the CAS amounts by group (claim and line level), BPR02 and the PLB total.

pyx12 4.0.0 maps 837P 005010X222A1, 837I X223A2 and 835 X221A1. The corpus's 837s are the errata
X222A2 and X223A3, which have the same loops and segments: they are given to pyx12 with GS08/ST03
rewritten to the guide it maps (X222A1, X223A2), which is how pyx12 reads them as their nearest guide.
A set pyx12 reports errors on is left out and named (hcsync canonicalises only the sets pyx12 accepts:
the 999 rejects the others first), as is a set hcsync itself refuses (it names the reason).
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from canonical.revenue_cycle import ClaimSubmission, Remittance
from canonical.x12.envelope import Interchange, read_interchanges
from canonical.x12.read import ReadStatus, read_interchange
from tests.corpus import corpus_dir
from tests.x12_samples import institutional_sets, professional_sets, remittance_sets, x12_file

pyx12_context = pytest.importorskip("pyx12.x12context")
pyx12_params = pytest.importorskip("pyx12.params")
pyx12_errors = pytest.importorskip("pyx12.error_handler")
pyx12_map_if = pytest.importorskip("pyx12.map_if")
pyx12_exceptions = pytest.importorskip("pyx12.errors")

# The guide pyx12 maps for each guide hcsync reads.
NEAREST = {
    "005010X222A1": "005010X222A1",
    "005010X222A2": "005010X222A1",
    "005010X223A2": "005010X223A2",
    "005010X223A3": "005010X223A2",
    "005010X221A1": "005010X221A1",
}
CAS_AMOUNTS = (3, 6, 9, 12, 15, 18)
PLB_AMOUNTS = (4, 6, 8, 10, 12, 14)


@dataclass
class Figures:
    """What both readings must agree on, for one interchange."""

    claim_ids: list[str] = field(default_factory=list)
    charges: list[Decimal] = field(default_factory=list)  # CLM02 or CLP03
    line_charges: list[Decimal] = field(default_factory=list)  # per 837 claim: sum of SV102/SV203
    paid: list[Decimal] = field(default_factory=list)  # CLP04
    adjustments: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))  # CAS by group
    bpr02: list[Decimal] = field(default_factory=list)
    plb: Decimal = Decimal(0)


def amount(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


@pytest.fixture(scope="module", autouse=True)
def quiet_and_memoised_pyx12() -> Iterator[None]:
    """pyx12 logs every finding at ERROR and re-parses its XML maps on every reader: silence, memoise."""
    logger = logging.getLogger("pyx12")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    original = pyx12_map_if.load_map_file
    maps: dict[tuple[str, str | None], Any] = {}

    def cached(map_file: str, param: Any, map_path: str | None = None) -> Any:
        # Keyed without ``param``: every reader passes a new one, which the maps do not depend on.
        if (map_file, map_path) not in maps:
            maps[map_file, map_path] = original(map_file, param, map_path)
        return maps[map_file, map_path]

    pyx12_map_if.load_map_file = cached
    pyx12_context.map_if.load_map_file = cached
    yield
    pyx12_map_if.load_map_file = original
    pyx12_context.map_if.load_map_file = original
    logger.setLevel(level)


def as_nearest(text: str, guide: str) -> str:
    """The interchange with GS08/ST03 naming the guide pyx12 maps (the loops are the same)."""
    return text.replace(guide, NEAREST[guide])


def pyx12_figures(text: str) -> tuple[Figures, int]:
    """Read one interchange with pyx12's map-aware tree; return the figures and pyx12's error count."""
    figures = Figures()
    errh = pyx12_errors.err_handler()
    param = pyx12_params.params()
    with pyx12_context.X12ContextReader(param, errh, io.StringIO(text)) as reader:
        for node in reader.iter_segments("2300"):
            if node.id == "2300" and node.get_value("CLM01") is not None:
                figures.claim_ids.append(node.get_value("CLM01"))
                figures.charges.append(amount(node.get_value("CLM02")))
                lines = [amount(n.get_value("SV102")) for n in node.select("2400/SV1")]
                lines += [amount(n.get_value("SV203")) for n in node.select("2400/SV2")]
                figures.line_charges.append(sum(lines, Decimal(0)))
    if not figures.claim_ids:
        with pyx12_context.X12ContextReader(param, errh, io.StringIO(text)) as reader:
            for node in reader.iter_segments("2100"):
                if node.id == "2100":
                    figures.claim_ids.append(node.get_value("CLP01"))
                    figures.charges.append(amount(node.get_value("CLP03")))
                    figures.paid.append(amount(node.get_value("CLP04")))
                    for cas in [*node.select("CAS"), *node.select("2110/CAS")]:
                        for number in CAS_AMOUNTS:
                            figures.adjustments[cas.get_value("CAS01")] += amount(
                                cas.get_value(f"CAS{number:02d}")
                            )
                elif node.id == "BPR":
                    figures.bpr02.append(amount(node.get_value("BPR02")))
                elif node.id == "PLB":
                    for number in PLB_AMOUNTS:
                        figures.plb += amount(node.get_value(f"PLB{number:02d}"))
    return figures, errh.get_error_count()


def cents(value: int) -> Decimal:
    return Decimal(value) / 100


def hcsync_figures(interchange: Interchange) -> tuple[Figures, list[str]]:
    """The same figures from hcsync's reading; the reasons of any set it refuses."""
    figures = Figures()
    refused: list[str] = []
    for reading in read_interchange(interchange):
        if reading.status is ReadStatus.ERROR:
            refused += [fault.describe() for fault in reading.errors]
        for model in reading.models:
            if isinstance(model, ClaimSubmission):
                figures.claim_ids.append(model.claim.claim_id)
                figures.charges.append(cents(model.claim.total_charge_cents))
                figures.line_charges.append(cents(sum(line.charge_cents for line in model.claim.lines)))
            elif isinstance(model, Remittance):
                figures.bpr02.append(cents(model.total_paid_cents))
                figures.plb += cents(sum(p.amount_cents for p in model.provider_adjustments))
                for claim in model.claims:
                    figures.claim_ids.append(claim.claim_id)
                    figures.charges.append(cents(claim.charge_cents))
                    figures.paid.append(cents(claim.paid_cents))
                    for adjustment in [
                        *claim.adjustments,
                        *(a for line in claim.lines for a in line.adjustments),
                    ]:
                        figures.adjustments[adjustment.group.value] += cents(adjustment.amount_cents)
    return figures, refused


def guide_of(interchange: Interchange) -> str:
    guides = {group.version for group in interchange.groups}
    return guides.pop() if len(guides) == 1 else ""


def compare(name: str, data: bytes) -> tuple[str, str]:
    """Compare one file's interchanges; return (outcome, detail): agree, pyx12 rejects, hcsync refuses."""
    outcomes: list[tuple[str, str]] = []
    for interchange in read_interchanges(data, name):
        guide = guide_of(interchange)
        assert guide in NEAREST, guide
        try:
            theirs, errors = pyx12_figures(as_nearest(interchange.text, guide))
        except pyx12_exceptions.EngineError as exc:
            outcomes.append(("pyx12 rejects", f"pyx12 cannot read it: {exc}"))
            continue
        if errors:
            outcomes.append(("pyx12 rejects", f"pyx12 reports {errors} error(s)"))
            continue
        ours, refused = hcsync_figures(interchange)
        if refused:
            outcomes.append(("hcsync refuses", refused[0]))
            continue
        theirs.adjustments = {k: v for k, v in theirs.adjustments.items() if v}
        ours.adjustments = {k: v for k, v in ours.adjustments.items() if v}
        assert ours == theirs, name
        assert ours.claim_ids, f"{name}: no claim compared"
        outcomes.append(("agree", f"{len(ours.claim_ids)} claim(s)"))
    worst = next((o for o in outcomes if o[0] != "agree"), outcomes[0])
    return worst


def corpus_files() -> list[Path]:
    root = corpus_dir("x12") / "x12"
    chosen = []
    for path in sorted(root.iterdir()):
        try:
            interchanges = read_interchanges(path.read_bytes(), path.name)
        except Exception:  # unreadable envelopes are the envelope tests' business
            continue
        if interchanges and all(guide_of(x) in NEAREST for x in interchanges):
            chosen.append(path)
    return chosen


def test_hcsync_and_pyx12_agree_on_every_corpus_set_pyx12_accepts() -> None:
    files = corpus_files()
    results = {path.name: compare(path.name, path.read_bytes()) for path in files}
    counts: dict[str, int] = defaultdict(int)
    for name, (outcome, detail) in sorted(results.items()):
        counts[outcome] += 1
        print(f"{outcome:15} {name}: {detail}")
    print(dict(counts))
    # 18 837P X222A2, 4 837I X223A3 and 6 835 X221A1 files (corpus of 2026-12).
    assert len(files) >= 25
    # 9 X222A2, 1 more 837P and 1 835 agree; pyx12 rejects 7 X222A2 (a '>' composite under ISA16 ':', a
    # missing CLM05-2, 2330B or misplaced AMT), the 4 X223A3 and 5 of the 6 835s (defects it names).
    assert counts["agree"] >= 10, results
    # hcsync may refuse a set pyx12 accepts only for a rule of the canonical contract, located.
    refused = [detail for outcome, detail in results.values() if outcome == "hcsync refuses"]
    assert all("[X12-MAPPING]" in detail and "position" in detail for detail in refused), refused


@pytest.mark.parametrize(
    ("st01", "guide", "sets"),
    [
        ("837", "005010X222A1", [professional_sets(), professional_sets()]),
        ("837", "005010X223A2", [institutional_sets()]),
        ("835", "005010X221A1", [remittance_sets(plbs=1)]),
    ],
    ids=["837P", "837I", "835"],
)
def test_hcsync_and_pyx12_agree_on_the_samples(st01: str, guide: str, sets: list[list[str]]) -> None:
    outcome, detail = compare("sample", x12_file(st01, guide, sets).encode())
    assert outcome == "agree", detail


def test_hcsync_and_pyx12_agree_on_a_generated_837p() -> None:
    from bench.x12_throughput import generate_837p

    text, claims = generate_837p(claims=200, seed=3)
    outcome, detail = compare("generated", text.encode())
    assert (outcome, detail) == ("agree", f"{claims} claim(s)")
