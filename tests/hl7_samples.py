"""Small HL7 v2 messages built for tests (not corpus files): ADT and DFT with controllable fields."""

from __future__ import annotations


def adt(
    trigger: str,
    control_id: str,
    visit: str,
    *,
    facility: str = "NMH",
    patient_class: str = "I",
    dept: str = "MEDSURG",
    mrn: str = "MRN001",
    family: str = "Doe",
    given: str = "Jane",
    admit: str = "20261120083000",
    discharge: str = "",
) -> bytes:
    """Return an ADT message with a PV1-19 visit number."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|20261120083000||ADT^{trigger}^ADT_A01|{control_id}|P|2.5.1",
        f"EVN|{trigger}|20261120083000",
        f"PID|1||{mrn}^^^{facility}^MR||{family}^{given}||19800101|F|||1 Main St^^Springfield^IL^62701"
        f"||555-0100|||||ACC{visit}^^^{facility}^AN",
        f"PV1|1|{patient_class}|{dept}^101^A^{facility}||||1234567890^Smith^John^^^^MD|||{dept}|||||||||"
        f"{visit}^^^{facility}^VN|||||||||||||||||||||||||{admit}|{discharge}",
    ]
    return ("\r".join(segments) + "\r").encode()


def dft(
    control_id: str,
    visit: str,
    lines: list[tuple[str, str, str, int, str]],
    *,
    facility: str = "NMH",
    dept: str = "MEDSURG",
    mrn: str = "MRN001",
) -> bytes:
    """Return a DFT^P03; each line is (type CG/CD, code, description, quantity, extended amount)."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|20261120093000||DFT^P03^DFT_P03|{control_id}|P|2.5.1",
        "EVN|P03|20261120093000",
        f"PID|1||{mrn}^^^{facility}^MR||Doe^Jane||19800101|F",
        f"PV1|1|I|{dept}^101^A^{facility}||||1234567890^Smith^John|||{dept}|||||||||{visit}^^^{facility}^VN",
    ]
    for i, (kind, code, text, qty, amount) in enumerate(lines, 1):
        segments.append(
            f"FT1|{i}|T{control_id}-{i}||20261120090000|20261120093000|{kind}|{code}^{text}^CPT||{text}|{qty}|{amount}"
            f"||{dept}^^^{facility}"
        )
    return ("\r".join(segments) + "\r").encode()
