from datetime import date, time

import numpy as np
import pandas as pd
import pytest

from gridctl.forecast import (
    EDF_TEMPO_2025_08,
    base_price,
    carbon_intensity,
    horizon_index,
    hphc_price,
    spot_price,
    tempo_colour,
    tempo_price,
)


def test_hphc_follows_local_time_in_winter_and_summer() -> None:
    winter = horizon_index(pd.Timestamp("2026-01-15 00:00", tz="UTC"), 96)
    p = hphc_price(winter, hp_eur_per_kwh=0.2, hc_eur_per_kwh=0.1)
    # 22:00 Paris = 21:00 UTC in January; 06:00 Paris = 05:00 UTC.
    assert p[pd.Timestamp("2026-01-15 20:45", tz="UTC")] == 0.2
    assert p[pd.Timestamp("2026-01-15 21:00", tz="UTC")] == 0.1
    assert p[pd.Timestamp("2026-01-15 04:45", tz="UTC")] == 0.1
    assert p[pd.Timestamp("2026-01-15 05:00", tz="UTC")] == 0.2
    assert (p == 0.1).sum() == 8 * 4
    summer = horizon_index(pd.Timestamp("2026-07-01 00:00", tz="UTC"), 96)
    q = hphc_price(summer, hp_eur_per_kwh=0.2, hc_eur_per_kwh=0.1)
    assert q[pd.Timestamp("2026-07-01 20:00", tz="UTC")] == 0.1  # 22:00 CEST


def test_hphc_configurable_windows() -> None:
    idx = horizon_index(pd.Timestamp("2026-01-15 00:00", tz="Europe/Paris"), 96)
    p = hphc_price(idx, 0.2, 0.1, offpeak=((time(23), time(4)), (time(12), time(15))))
    assert (p == 0.1).sum() == (5 + 3) * 4


def test_tempo_day_runs_from_six_to_six() -> None:
    idx = horizon_index(pd.Timestamp("2026-01-15 00:00", tz="Europe/Paris"), 24, freq="1h")
    colours = {date(2026, 1, 14): "white", date(2026, 1, 15): "red"}
    col = tempo_colour(idx, colours)
    local = idx.tz_convert("Europe/Paris")
    assert list(col[local.hour < 6]) == ["white"] * 6
    assert set(col[local.hour >= 6]) == {"red"}
    p = tempo_price(idx, colours)
    red = EDF_TEMPO_2025_08["red"]
    assert p[local.hour == 12].iloc[0] == red["hp"]
    assert p[local.hour == 23].iloc[0] == red["hc"]
    assert p[local.hour == 3].iloc[0] == EDF_TEMPO_2025_08["white"]["hc"]


def test_spot_is_held_over_its_hour_and_converted() -> None:
    idx = horizon_index(pd.Timestamp("2026-01-15 00:00", tz="UTC"), 8)
    spot = pd.Series([100.0, -20.0], index=pd.date_range("2026-01-15", periods=2, freq="1h", tz="UTC"))
    p = spot_price(idx, spot, fees_eur_per_kwh=0.05, vat=0.2)
    assert p.iloc[:4].tolist() == pytest.approx([(0.1 + 0.05) * 1.2] * 4)
    assert p.iloc[4:].tolist() == pytest.approx([(-0.02 + 0.05) * 1.2] * 4)
    later = horizon_index(pd.Timestamp("2026-01-15 02:00", tz="UTC"), 2)
    assert spot_price(later, spot).isna().all()


def test_base_and_carbon() -> None:
    idx = horizon_index(pd.Timestamp("2026-01-15 00:00", tz="UTC"), 96)
    assert (base_price(idx, 0.2) == 0.2).all()
    c = carbon_intensity(idx)
    assert c.mean() == pytest.approx(0.0217, rel=1e-6)
    local = idx.tz_convert("Europe/Paris")
    assert c[local.hour == 19].mean() > c[local.hour == 7].mean()
    sig = pd.Series([50.0], index=[pd.Timestamp("2026-01-15 01:00", tz="UTC")])
    c2 = carbon_intensity(idx, sig)
    assert c2[pd.Timestamp("2026-01-15 01:30", tz="UTC")] == pytest.approx(0.05)
    assert np.isclose(c2.iloc[0], c.iloc[0])
