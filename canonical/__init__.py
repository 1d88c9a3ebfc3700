"""The hcsync contract: canonical models, identifiers and the mappers from source standards.

This package is the bottom layer: it imports nothing from the rest of hcsync.
"""
