"""RC thermal models discretised exactly for inputs held constant over a step, and heat-pump COP."""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm

from optimizer.problem import ThermalZone


def continuous_matrices(zone: ThermalZone) -> tuple[np.ndarray, np.ndarray]:
    """State x = [T_air] (1R1C) or [T_air, T_mass] (2R2C); input u = [T_out, Q_heat_kw]; dx/dt = A x + B u."""
    ca = zone.c_air_kwh_per_k
    g_ao = 0.0 if zone.r_air_out_k_per_kw is None else 1.0 / zone.r_air_out_k_per_kw
    if zone.model == "1R1C":
        a = np.array([[-g_ao / ca]])
        b = np.array([[g_ao / ca, 1.0 / ca]])
        return a, b
    cm = float(zone.c_mass_kwh_per_k or 0.0)
    g_am = 1.0 / float(zone.r_air_mass_k_per_kw or 1.0)
    g_mo = 1.0 / float(zone.r_mass_out_k_per_kw or 1.0)
    a = np.array([[-(g_am + g_ao) / ca, g_am / ca], [g_am / cm, -(g_am + g_mo) / cm]])
    b = np.array([[g_ao / ca, 1.0 / ca], [g_mo / cm, 0.0]])
    return a, b


def discretise(zone: ThermalZone, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact zero-order-hold discretisation: x[k+1] = Ad x[k] + Bd u[k]."""
    a, b = continuous_matrices(zone)
    if zone.model == "1R1C":
        # One state: Ad = e^{a·dt} and Bd = (Ad − 1)/a · b, without expm's ~0.1 ms per call (a district has
        # hundreds of zones).
        ad = float(np.exp(a[0, 0] * dt_h))
        return np.array([[ad]]), b * (-np.expm1(a[0, 0] * dt_h) / -a[0, 0])
    n, m = a.shape[0], b.shape[1]
    # The augmented-matrix exponential gives Ad and Bd together, also when A is singular.
    big = np.zeros((n + m, n + m))
    big[:n, :n] = a
    big[:n, n:] = b
    e = expm(big * dt_h)
    return e[:n, :n], e[:n, n:]


def carnot_cop(outdoor_c: list[float], supply_c: float, fraction: float, approach_k: float) -> list[float]:
    """COP as a fraction of Carnot between supply + approach and outdoor − approach, floored at 1."""
    hot = supply_c + approach_k + 273.15
    out = []
    for t in outdoor_c:
        lift = max(hot - (t - approach_k + 273.15), 1.0)
        out.append(max(1.0, fraction * hot / lift))
    return out
