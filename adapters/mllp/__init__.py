"""HL7 v2 over MLLP: framing, ACKs, the gateway that stores each message before acknowledging it, a client.

``hcsync mllp`` runs :func:`~adapters.mllp.run.run_gateway`; ``hcsync send FILE --mllp HOST:PORT`` uses
:func:`~adapters.mllp.client.send_mllp`. The modules are imported directly (``adapters.mllp.gateway`` and
so on) so that the framing and ACK code loads without the message store and its database driver.
"""
