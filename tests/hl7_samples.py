"""Small HL7 v2 messages built for tests (not corpus files): ADT, DFT, BAR, RDE, RAS and person, merge and
move messages."""

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
    at: str = "20261120083000",
) -> bytes:
    """Return an ADT message with a PV1-19 visit number; ``at`` is MSH-7 and EVN-2."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|{at}||ADT^{trigger}^ADT_A01|{control_id}|P|2.5.1",
        f"EVN|{trigger}|{at}",
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
    code_system: str = "CPT",
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
            f"FT1|{i}|T{control_id}-{i}||20261120090000|20261120093000|{kind}|{code}^{text}^{code_system}||{text}"
            f"|{qty}|{amount}"
            f"||{dept}^^^{facility}"
        )
    return ("\r".join(segments) + "\r").encode()


def bar(
    trigger: str,
    control_id: str,
    visit: str,
    *,
    facility: str = "NMH",
    diagnoses: tuple[str, ...] = ("I21.4",),
    procedures: tuple[str, ...] = ("92928",),
    drg: str = "247",
    at: str = "20261121100000",
) -> bytes:
    """Return a BAR^P01/P05/P06 with one visit and its DG1, PR1 and DRG segments."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|{at}||BAR^{trigger}^BAR_P01|{control_id}|P|2.5.1",
        f"EVN|{trigger}|{at}",
        f"PID|1||MRN001^^^{facility}^MR||Doe^Jane||19800101|F",
        f"PV1|1|I|CARD^201^A^{facility}||||1234567890^Smith^John|||CARD|||||||||{visit}^^^{facility}^VN",
    ]
    for i, code in enumerate(diagnoses, 1):
        kind = "A" if i == 1 else "F"
        segments.append(f"DG1|{i}||{code}^Diagnosis {code}^I10||{at}|{kind}|||||||||{i}")
    for i, code in enumerate(procedures, 1):
        segments.append(f"PR1|{i}||{code}^Procedure {code}^CPT||{at}||||||1234567890^Smith^John|||{i}")
    if drg:
        segments.append(f"DRG|{drg}^DRG {drg}^MS-DRG|{at}")
    return ("\r".join(segments) + "\r").encode()


def rde(
    control_id: str, visit: str, *, order: str = "ORD1", drug: str = "00409-4888-01", facility: str = "NMH"
) -> bytes:
    """Return an RDE^O11 with one verified order."""
    segments = [
        f"MSH|^~\\&|PHARM|{facility}|HCSYNC|HCSYNC|20261120100000||RDE^O11^RDE_O11|{control_id}|P|2.5.1",
        f"PID|1||MRN001^^^{facility}^MR||Doe^Jane||19800101|F",
        f"PV1|1|I|MEDSURG^101^A^{facility}||||||||||||||||{visit}^^^{facility}^VN",
        f"ORC|NW|{order}|F{order}||||||20261120100000|||1234567890^Smith^John",
        f"RXE|1^Q6H|{drug}^Heparin 5000 unit/mL^NDC|1||mL^mL|||||10|mL",
    ]
    return ("\r".join(segments) + "\r").encode()


def ras(
    control_id: str,
    visit: str,
    doses: list[tuple[str, str, str]],
    *,
    order: str = "ORD1",
    drug: str = "00409-4888-01",
    facility: str = "NMH",
    at: str = "20261120110000",
) -> bytes:
    """Return a RAS^O17; each dose is (RXA-2 sub-id, RXA-6 amount, RXA-20 status[ "^" RXA-21 action])."""
    segments = [
        f"MSH|^~\\&|EMAR|{facility}|HCSYNC|HCSYNC|{at}||RAS^O17^RAS_O17|{control_id}|P|2.5.1",
        f"PID|1||MRN001^^^{facility}^MR||Doe^Jane||19800101|F",
        f"PV1|1|I|MEDSURG^101^A^{facility}||||||||||||||||{visit}^^^{facility}^VN",
        f"ORC|RE|{order}|F{order}",
    ]
    for sub, amount, status in doses:
        completion, _, action = status.partition("^")
        segments.append(
            f"RXA|0|{sub}|{at}|{at}|{drug}^Heparin 5000 unit/mL^NDC|{amount}|mL^mL"
            f"|||||||||||||{completion}|{action}"
        )
    return ("\r".join(segments) + "\r").encode()


def a40(control_id: str, surviving: str, prior: str, *, facility: str = "NMH") -> bytes:
    """Return an ADT^A40 merging the prior MRN into the surviving one."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|20261122090000||ADT^A40^ADT_A39|{control_id}|P|2.5.1",
        "EVN|A40|20261122090000",
        f"PID|1||{surviving}^^^{facility}^MR||Doe^Jane||19800101|F",
        f"MRG|{prior}^^^{facility}^MR",
    ]
    return ("\r".join(segments) + "\r").encode()


def dft_p11(
    control_id: str,
    visit: str,
    transactions: list[tuple[str, str, str, int, str, tuple[str, ...], tuple[str, ...]]],
    *,
    facility: str = "NMH",
    dept: str = "MEDSURG",
    diagnoses: tuple[str, ...] = (),
    drg: str = "",
    at: str = "20261120093000",
) -> bytes:
    """Return a DFT^P11 (DFT_P11 structure of v2.5/2.6): message-level DG1 and DRG, then one FINANCIAL
    group per transaction (type, code, description, quantity, extended amount, PR1 codes, DG1 codes)."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|{at}||DFT^P11^DFT_P11|{control_id}|P|2.6",
        f"EVN|P11|{at}",
        f"PID|1||MRN001^^^{facility}^MR||Doe^Jane||19800101|F|||||||||ACC{visit}^^^{facility}^AN",
        f"PV1|1|O|{dept}^^^{facility}||||1234567890^Smith^John|||{dept}|||||||||{visit}^^^{facility}^VN",
    ]
    for i, code in enumerate(diagnoses, 1):
        segments.append(f"DG1|{i}||{code}^Diagnosis {code}^I10||{at}|F")
    if drg:
        segments.append(f"DRG|{drg}^DRG {drg}^MS-DRG|{at}")
    segments.append("GT1|1||Doe^Jane||1 Main St^^Springfield^IL^62701")
    segments.append("IN1|1|BCBS|BC01|Blue Cross")
    for n, (kind, code, text, qty, amount, procedures, dx) in enumerate(transactions, 1):
        segments.append(
            f"FT1|{n}|T{control_id}-{n}||20261120090000|{at}|{kind}|{code}^{text}^CPT||{text}|{qty}|{amount}"
            f"||{dept}^^^{facility}||||||||||||{code}"
        )
        for p, pcode in enumerate(procedures, 1):
            segments.append(f"PR1|{p}||{pcode}^Procedure {pcode}^CPT||{at}")  # 2.6: the surgeon is in ROL
            segments.append("ROL|1|AD|PP|1234567890^Smith^John")
        for d, dcode in enumerate(dx, 1):
            segments.append(f"DG1|{d}||{dcode}^Diagnosis {dcode}^I10||{at}|W")
    return ("\r".join(segments) + "\r").encode()


def bar_p12(
    control_id: str,
    visit: str,
    *,
    diagnoses: tuple[tuple[str, str, str], ...] = (),
    procedures: tuple[tuple[str, str, str], ...] = (),
    drg: str = "",
    facility: str = "NMH",
    at: str = "20261122100000",
) -> bytes:
    """Return a BAR^P12; each diagnosis and procedure is (code, identifier, action): DG1-3, DG1-20, DG1-21
    and PR1-3, PR1-19, PR1-20."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|{at}||BAR^P12^BAR_P12|{control_id}|P|2.5.1",
        f"EVN|P12|{at}",
        f"PID|1||MRN001^^^{facility}^MR||Doe^Jane||19800101|F",
        f"PV1|1|I|CARD^201^A^{facility}||||1234567890^Smith^John|||CARD|||||||||{visit}^^^{facility}^VN",
    ]
    for i, (code, ident, action) in enumerate(diagnoses, 1):
        segments.append(f"DG1|{i}||{code}^Diagnosis {code}^I10||{at}|F|||||||||{i}|||||{ident}|{action}")
    if drg:
        segments.append(f"DRG|{drg}^DRG {drg}^MS-DRG|{at}")
    for i, (code, ident, action) in enumerate(procedures, 1):
        segments.append(
            f"PR1|{i}||{code}^Procedure {code}^CPT||{at}||||||1234567890^Smith^John|||{i}"
            f"|||||{ident}|{action}"
        )
        segments.append("ROL|1|AD|SURG|1234567890^Smith^John")
    return ("\r".join(segments) + "\r").encode()


def person(
    trigger: str,
    control_id: str,
    *,
    mrn: str = "MRN001",
    facility: str = "NMH",
    family: str = "Doe",
    given: str = "Jane",
    birth: str = "19800101",
    at: str = "20261123090000",
) -> bytes:
    """Return an ADT^A28 or A31 (ADT_A05 structure) for one person, with the dummy PV1 senders add."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|{at}||ADT^{trigger}^ADT_A05|{control_id}|P|2.5.1",
        f"EVN|{trigger}|{at}",
        f"PID|1||{mrn}^^^{facility}^MR||{family}^{given}||{birth}|F|||9 Elm St^^Springfield^IL^62702"
        f"||555-0199",
        "PV1|1|N",
    ]
    return ("\r".join(segments) + "\r").encode()


def a44(
    control_id: str,
    target: str,
    prior: str,
    account: str,
    *,
    facility: str = "NMH",
    at: str = "20261124090000",
) -> bytes:
    """Return an ADT^A44 (ADT_A43 structure) moving the prior patient's account to the target patient."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|{at}||ADT^A44^ADT_A43|{control_id}|P|2.5.1",
        f"EVN|A44|{at}",
        f"PID|1||{target}^^^{facility}^MR||Roe^Richard||19700505|M||||||||||{account}^^^{facility}^AN",
        f"MRG|{prior}^^^{facility}^MR||{account}^^^{facility}^AN",
    ]
    return ("\r".join(segments) + "\r").encode()


def a45(
    control_id: str,
    target: str,
    prior: str,
    visits: tuple[str, ...],
    *,
    facility: str = "NMH",
    at: str = "20261124100000",
) -> bytes:
    """Return an ADT^A45 moving each visit (MRG-5 and its PV1) of the prior patient to the target patient."""
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|HCSYNC|HCSYNC|{at}||ADT^A45^ADT_A45|{control_id}|P|2.5.1",
        f"EVN|A45|{at}",
        f"PID|1||{target}^^^{facility}^MR||Roe^Richard||19700505|M",
    ]
    for visit in visits:
        segments.append(f"MRG|{prior}^^^{facility}^MR||ACC{visit}^^^{facility}^AN||{visit}^^^{facility}^VN")
        segments.append(f"PV1|1|I|MEDSURG^101^A^{facility}||||||||||||||||{visit}^^^{facility}^VN")
    return ("\r".join(segments) + "\r").encode()


def in1(**fields: str) -> str:
    """Return an IN1 segment from keyword fields named f<number> (``in1(f1="1", f3="BCBS-MN")``)."""
    numbered = {int(name.removeprefix("f")): value for name, value in fields.items()}
    values = [""] * (max(numbered, default=1) + 1)
    values[0] = "IN1"
    for number, value in numbered.items():
        values[number] = value
    return "|".join(values)


def with_segments(message: bytes, *segments: str) -> bytes:
    """Return ``message`` with ``segments`` appended (each ends with CR, as the message's own do)."""
    return message + "".join(f"{segment}\r" for segment in segments).encode()
