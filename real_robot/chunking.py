"""Moved to `lara.chunking` (the ROS node and the simulated harnesses of `lara.benchmarks` share it); this name stays
for code that imports it from here."""

from lara.chunking import ActionQueue, SimulatedLatency

__all__ = ["ActionQueue", "SimulatedLatency"]
