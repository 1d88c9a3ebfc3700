"""Demo master data: a realistic, invented reference set for the three-hospital demo network.

``DEMO_DIR`` holds the shipped set (manifest.yaml plus one CSV per domain), as written by
``python -m cluster.masterdata.build_demo``; it covers every code the synthetic day (cluster.synth) sends.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).parent / "demo"

__all__ = ["DEMO_DIR"]
