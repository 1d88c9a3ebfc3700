"""Inbound messages: the message store every gateway writes before it acknowledges, and the forwarder.

A gateway (MLLP today, X12 and FHIR later) or ``hcsync send`` makes each message durable in the message
store (:mod:`adapters.inbound.store`, many messages per transaction: :mod:`adapters.inbound.writer`) and
only then acknowledges it. The forwarder (:mod:`adapters.inbound.forwarder`) moves stored messages to the
broker at least once and records what the pipeline made of each one (:mod:`adapters.inbound.outcomes`).
"""
