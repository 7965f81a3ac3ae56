"""Closed-loop simulation: the control cycle on simulated time against the simulated site."""
