"""The foundation every other layer may import: settings, log masking, topic names, broker, SQL and process
helpers, run directories, and the broker key of a source message.

It imports nothing of hcsync but ``canonical``; streams/, actors/, adapters/ and cluster/ build on it.
"""
