"""poolgate.sim: a vLLM-compatible model-server simulator (see docs/simulator.md)."""

from poolgate.sim.faults import FaultSettings
from poolgate.sim.fleet import SimFleet, start_fleet
from poolgate.sim.options import SimOptions

__all__ = ["FaultSettings", "SimFleet", "SimOptions", "start_fleet"]
