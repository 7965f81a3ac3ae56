"""Deterministic physics of the simulated district: weather, PV, storage, EVs, buildings, loads.

Every model advances by an explicit time step with its inputs held constant over the step, so a
simulation is a pure function of its seed and the instants it is stepped to; nothing sleeps.
"""
