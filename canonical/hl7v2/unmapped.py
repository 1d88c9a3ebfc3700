"""What becomes of a message hcsync does not map: routed as having no financial effect, or quarantined.

A message type hcsync does not map is routed to routed.hl7v2 only when nothing in it could move money or
change what billing knows. The rules, first match wins (docs/mappings/hl7v2.md, "Messages hcsync does not
map"):

    HL7-UNMAPPED-TRIGGER    a BAR or DFT trigger hcsync does not map (every one is financial), or an ADT
                            trigger hcsync does not map that names a visit (PV1), a prior identifier
                            (MRG: merges, moves, identifier changes) or carries FT1, DG1 or PR1
    HL7-UNMAPPED-FINANCIAL  any other message that carries a charge (FT1) or coding (DG1, PR1): an ORM
                            with FT1 charges, an SIU with DG1 diagnoses; also an FT1 in a message type
                            hcsync maps but whose mapper does not read FT1 (ADT, BAR, RDE, RAS)
    HL7-UNMAPPED-VISIT      a message type not in the table of known types without financial effect
                            (NO_FINANCIAL_EFFECT) that carries a PV1 visit

A segment counts only when it carries something besides its set id (field 1; MRG has none); a PV1
whose only value is PV1-2 = N (not applicable), as person-level messages send it, carries no visit. The
fault names the message, the segment, its key field and its position; its reason says what the message
is.
"""

from __future__ import annotations

from canonical.errors import Fault
from canonical.hl7v2.parser import Hl7Message, Segment

UNMAPPED_TRIGGER = "HL7-UNMAPPED-TRIGGER"
UNMAPPED_FINANCIAL = "HL7-UNMAPPED-FINANCIAL"
UNMAPPED_VISIT = "HL7-UNMAPPED-VISIT"

# Message types (MSH-9.1) known to have no financial effect in hcsync, by HL7 v2 chapter. They often carry
# a PV1 (the visit a result or an appointment belongs to) and are still routed; one that carries FT1, DG1
# or PR1 is quarantined all the same (HL7-UNMAPPED-FINANCIAL).
NO_FINANCIAL_EFFECT: dict[str, str] = {
    # 2 control
    "ACK": "general acknowledgment",
    "MCF": "delayed acknowledgment",
    # 4 orders: an order is not a charge; its charge comes as DFT, its stock use as RAS
    "ORM": "order",
    "ORR": "order response",
    "OMG": "general clinical order",
    "ORG": "general clinical order response",
    "OML": "laboratory order",
    "ORL": "laboratory order response",
    "OMI": "imaging order",
    "ORI": "imaging order response",
    "OMD": "dietary order",
    "ORD": "dietary order response",
    "OMS": "stock requisition order",
    "ORS": "stock requisition order response",
    "OMN": "non-stock requisition order",
    "ORN": "non-stock requisition order response",
    "OMP": "pharmacy order",
    "ORP": "pharmacy order response",
    "OMB": "blood product order",
    "ORB": "blood product order response",
    "BPS": "blood product dispense status",
    "BRP": "blood product dispense status response",
    "BTS": "blood product transfusion or disposition",
    "BRT": "blood product transfusion or disposition response",
    "OSQ": "order status query",
    "OSR": "order status response",
    "OPL": "population or location based laboratory order",
    "OPR": "population or location based laboratory order response",
    "RDE": "pharmacy encoded order (hcsync maps RDE^O11 only)",
    "RRE": "pharmacy encoded order response",
    "RDS": "pharmacy dispense (stock is consumed by the administration, RAS)",
    "RRD": "pharmacy dispense response",
    "RGV": "pharmacy give",
    "RRG": "pharmacy give response",
    "RAS": "pharmacy administration (hcsync maps RAS^O17 only)",
    "RRA": "pharmacy administration response",
    "RAR": "pharmacy administration information",
    "RDR": "pharmacy dispense information",
    "RER": "pharmacy encoded order information",
    "RGR": "pharmacy give information",
    "ROR": "pharmacy prescription order response",
    "VXU": "vaccination record update",
    "VXR": "vaccination record response",
    "VXQ": "vaccination record query",
    "VXX": "vaccination query response with multiple patients",
    # 5 queries
    "QRY": "query",
    "QBP": "query by parameter",
    "RSP": "segment pattern response",
    "RTB": "tabular response",
    "RDY": "display response",
    "DSR": "display response",
    "QCN": "cancel query",
    "QSB": "subscription query",
    "QVR": "query for previous events",
    "ERP": "event replay response",
    # 7 observations
    "ORU": "observation result",
    "OUL": "unsolicited laboratory observation",
    "ORA": "observation report acknowledgment",
    "CRM": "clinical trials registration",
    "CSU": "clinical trials data",
    "PEX": "product experience",
    # 8 master files
    "MFN": "master file notification",
    "MFK": "master file acknowledgment",
    "MFD": "master files delayed application",
    "MFQ": "master files query",
    "MFR": "master files response",
    # 9 medical records
    "MDM": "medical document management",
    # 10 scheduling
    "SIU": "schedule information unsolicited",
    "SRM": "schedule request",
    "SRR": "scheduled request response",
    "SQM": "schedule query",
    "SQR": "schedule query response",
    # 11 referrals
    "REF": "patient referral",
    "RRI": "referral response",
    "RQA": "request patient authorization",
    "RPA": "return patient authorization",
    "RQI": "request patient information",
    "RPI": "return patient information",
    "RPL": "return patient display list",
    "RPR": "return patient list",
    "RQC": "request clinical information",
    "RCI": "return clinical information",
    "RCL": "return clinical list",
    "RQP": "request patient demographics",
    # 12 patient care
    "PPR": "patient problem",
    "PPP": "patient pathway (problem-oriented)",
    "PPG": "patient goal",
    "PGL": "patient goal",
    "PPV": "patient goal query",
    "PRR": "patient problem response",
    "PTR": "patient pathway response",
    "PPT": "patient pathway (goal-oriented)",
    "PCL": "patient care list",
    # 13 laboratory automation
    "EAC": "automated equipment command",
    "EAN": "automated equipment notification",
    "EAR": "automated equipment response",
    "ESU": "automated equipment status update",
    "ESR": "automated equipment status request",
    "INR": "automated equipment inventory request",
    "INU": "automated equipment inventory update",
    "LSU": "automated equipment log or service update",
    "LSR": "automated equipment log or service request",
    "SSU": "specimen status update",
    "SSR": "specimen status request",
    "TCU": "automated equipment test code settings update",
    "TCR": "automated equipment test code settings request",
    # 14 network management
    "NMD": "network management data",
    "NMQ": "network management query",
    "NMR": "network management response",
    # 15 personnel management
    "PMU": "add personnel record",
}
# The families whose every trigger is financial: one hcsync does not map is never routed.
FINANCIAL_FAMILIES = frozenset({"BAR", "DFT"})
# Segments that carry money or coding, and the field a fault points at (its code).
_FINANCIAL_SEGMENTS = {"FT1": 7, "DG1": 3, "PR1": 3}
_WHAT = {
    "FT1": "a charge (FT1)",
    "DG1": "a diagnosis (DG1)",
    "PR1": "a procedure (PR1)",
    "PV1": "a visit (PV1)",
    "MRG": "a prior patient identifier (MRG)",
}


def _carries(msg: Hl7Message, seg: Segment) -> bool:
    """True when the segment holds a value besides its set id; a PV1 with only PV1-2 = N holds no visit.

    A field made of delimiters alone (``^^^``, ``~``) or of spaces holds nothing. MRG has no set id.
    """
    enc = msg.encoding
    delimiters = f"{enc.component}{enc.repetition}{enc.subcomponent} "
    first = 1 if seg.name == "MRG" else 2
    values = [seg.raw_field(n).strip(delimiters) for n in range(first, seg.field_count() + 1)]
    if not any(values):
        return False
    if seg.name == "PV1":
        return any(values[1:]) or values[0] != "N"
    return True


def _first(msg: Hl7Message, names: tuple[str, ...]) -> Segment | None:
    return next((s for s in msg.segments if s.name in names and _carries(msg, s)), None)


def _located(msg: Hl7Message, rule: str, seg: Segment, reason: str) -> Fault:
    """Return the fault of ``seg``: its key field and, except for MRG-1 (a patient identifier), its value."""
    number = _FINANCIAL_SEGMENTS.get(seg.name, 19 if seg.name == "PV1" else 1)
    found = "" if seg.name == "MRG" else seg.get(number).strip()
    return Fault(
        rule=rule,
        reason=reason,
        message_id=msg.control_id,
        segment=seg.name,
        field=f"{seg.name}-{number}",
        position=seg.index,
        found=found,
    )


def unread_charge_fault(msg: Hl7Message) -> Fault | None:
    """Return the fault of an FT1 in a message whose mapper reads none (a mapped ADT, BAR, RDE or RAS)."""
    ft1 = _first(msg, ("FT1",))
    if ft1 is None:
        return None
    return _located(
        msg,
        UNMAPPED_FINANCIAL,
        ft1,
        f"{msg.event_code} carries a charge (FT1) that its mapping does not read; hcsync posts charges "
        "from DFT^P03 and DFT^P11",
    )


def unmapped_fault(msg: Hl7Message, message_type: str, trigger: str) -> Fault | None:
    """Return why a message hcsync does not map must be quarantined, or None when it may be routed."""
    code = msg.event_code or "a message without MSH-9"
    if message_type in FINANCIAL_FAMILIES:
        return Fault(
            rule=UNMAPPED_TRIGGER,
            reason=f"{code}: hcsync does not map this {message_type} trigger, and every {message_type} "
            "trigger has a financial effect",
            message_id=msg.control_id,
            segment="MSH",
            field="MSH-9.2",
            position=0,
            found=trigger,
        )
    if message_type == "ADT":
        seg = _first(msg, ("FT1", "DG1", "PR1", "PV1", "MRG"))
        if seg is None:
            return None
        named = f"ADT trigger {trigger}" if trigger else "ADT without a trigger (MSH-9.2, EVN-1)"
        return _located(
            msg,
            UNMAPPED_TRIGGER,
            seg,
            f"{named} is not mapped by hcsync and it carries {_WHAT[seg.name]} billing would not see",
        )
    seg = _first(msg, tuple(_FINANCIAL_SEGMENTS))
    if seg is not None:
        return _located(
            msg,
            UNMAPPED_FINANCIAL,
            seg,
            f"{code} carries {_WHAT[seg.name]}, which hcsync does not map for this message type",
        )
    if message_type in NO_FINANCIAL_EFFECT:
        return None
    pv1 = _first(msg, ("PV1",))
    if pv1 is None:
        return None
    return _located(
        msg,
        UNMAPPED_VISIT,
        pv1,
        f"{code} is not a message type hcsync knows to have no financial effect, and it carries a "
        "visit (PV1)",
    )


__all__ = [
    "FINANCIAL_FAMILIES",
    "NO_FINANCIAL_EFFECT",
    "UNMAPPED_FINANCIAL",
    "UNMAPPED_TRIGGER",
    "UNMAPPED_VISIT",
    "unmapped_fault",
    "unread_charge_fault",
]
