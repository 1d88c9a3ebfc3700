"""X12 5010: reading interchanges as senders deliver them (envelope.py)."""
