"""Topic names: the logical names hcsync uses, prefixed per deployment by settings.topic_prefix."""

from __future__ import annotations

from dataclasses import dataclass

RAW_HL7V2 = "raw.hl7v2"
# X12 interchanges as received (`hcsync send`), one record each, keyed by sender|ISA13.
RAW_X12 = "raw.x12"
EVENTS_CANONICAL = "events.canonical"
COMMANDS_BILLING = "commands.billing"
COMMANDS_ERP = "commands.erp"
# The revenue cycle's commands (coverage and eligibility, claims due, 835s, claim acknowledgments), keyed
# by encounter (or by payer and trace for an 835): what the revenue dispatcher turns into billing, payer
# and ERP calls.
COMMANDS_REVENUE = "commands.revenue"
EXCEPTIONS = "exceptions"
# Valid messages with no financial effect (ORU, ORM, SIU, MDM...): a receipt with the original bytes, keyed
# by encounter where known, for downstream clinical consumers.
ROUTED_HL7V2 = "routed.hl7v2"
# What the ingest made of each source message (mapped, routed, quarantined), one record per transform batch;
# the forwarder writes it into the message store.
OUTCOMES_INGEST = "outcomes.ingest"
ALL = (
    RAW_HL7V2,
    RAW_X12,
    EVENTS_CANONICAL,
    COMMANDS_BILLING,
    COMMANDS_ERP,
    COMMANDS_REVENUE,
    EXCEPTIONS,
    ROUTED_HL7V2,
    OUTCOMES_INGEST,
)
# The topics the Faust workers consume.
WORKER_INPUTS = (
    RAW_HL7V2,
    RAW_X12,
    EVENTS_CANONICAL,
    COMMANDS_BILLING,
    COMMANDS_ERP,
    COMMANDS_REVENUE,
    EXCEPTIONS,
)
# The stage of the worker that consumes each of them, most upstream first (`hcsync status` names the
# bottleneck by these, and the autoscaler its hold reasons).
STAGES = {
    RAW_HL7V2: "ingest",
    RAW_X12: "X12 ingest",
    EVENTS_CANONICAL: "encounters",
    COMMANDS_BILLING: "billing dispatch",
    COMMANDS_ERP: "ERP dispatch",
    COMMANDS_REVENUE: "revenue dispatch",
    EXCEPTIONS: "quarantine",
}


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The full topic names of one deployment."""

    prefix: str = ""

    def __getitem__(self, logical: str) -> str:
        return f"{self.prefix}{logical}"

    @property
    def raw_hl7v2(self) -> str:
        return self[RAW_HL7V2]

    @property
    def raw_x12(self) -> str:
        return self[RAW_X12]

    @property
    def events(self) -> str:
        return self[EVENTS_CANONICAL]

    @property
    def billing(self) -> str:
        return self[COMMANDS_BILLING]

    @property
    def erp(self) -> str:
        return self[COMMANDS_ERP]

    @property
    def revenue(self) -> str:
        return self[COMMANDS_REVENUE]

    @property
    def exceptions(self) -> str:
        return self[EXCEPTIONS]

    @property
    def routed(self) -> str:
        return self[ROUTED_HL7V2]

    @property
    def outcomes(self) -> str:
        return self[OUTCOMES_INGEST]

    def all(self) -> tuple[str, ...]:
        return tuple(self[name] for name in ALL)
