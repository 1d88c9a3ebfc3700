"""X12 interchanges built for tests, in any delimiters a sender may declare."""

from __future__ import annotations

__all__ = ["interchange", "x12_seeds"]


def interchange(
    control: str = "000000123",
    *,
    element: str = "*",
    component: str = ":",
    segment: str = "~",
    repetition: str = "^",
    version: str = "00501",
    after: str = "",
    body: str | None = None,
) -> str:
    """An 837P interchange with one group of two claims' transaction sets, in the given delimiters."""
    e, t = element, segment + after
    isa = e.join(
        [
            "ISA",
            "00",
            " " * 10,
            "00",
            " " * 10,
            "ZZ",
            "SUBMITTER".ljust(15),
            "ZZ",
            "RECEIVER".ljust(15),
            "261205",
            "1200",
            repetition,
            version,
            control,
            "1",
            "P",
            component,
        ]
    )
    if body is None:
        body = t.join(
            [
                e.join(["GS", "HC", "SUB", "REC", "20261205", "1200", "77", "X", "005010X222A1"]),
                e.join(["ST", "837", "0001", "005010X222A1"]),
                e.join(["CLM", "PATIENT-1", "125", "", "", component.join(["11", "B", "1"])]),
                e.join(["HI", component.join(["ABK", "I10"]) + repetition + component.join(["ABF", "E119"])]),
                e.join(["SE", "4", "0001"]),
                e.join(["ST", "837", "0002", "005010X222A1"]),
                e.join(["CLM", "PATIENT-2", "80"]),
                e.join(["SE", "3", "0002"]),
                e.join(["GE", "2", "77"]),
                e.join(["IEA", "1", control]),
            ]
        )
    return isa + t + body + t


def x12_seeds() -> list[bytes]:
    """Interchanges as real senders send them: plain, CRLF, a BOM, newline-terminated, two in one file."""
    return [
        interchange().encode(),
        interchange(after="\r\n").encode(),
        ("\ufeff" + interchange()).encode(),
        interchange(element="|", component=">", segment="\n", repetition="!").encode(),
        (
            interchange("000000001") + interchange("000000002", element="^", component="\\", segment="'")
        ).encode(),
        interchange(repetition="U", version="00401").encode(),
    ]
