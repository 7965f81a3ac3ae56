"""Import prices on a horizon from the site's tariff: base, peak/off-peak, Tempo colours or spot."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gridctl.config.models import Tariff
from gridctl.config.windows import in_any


def tariff_prices(tariff: Tariff, moments: Sequence[datetime], tz: ZoneInfo,
                  tempo_colours: dict[str, str] | None = None,
                  spot_eur_per_kwh: Sequence[float] | None = None) -> list[float]:
    """Import price (€/kWh) at each instant. Tempo colours are keyed by the Tempo day (ISO date of
    the 06:00–06:00 day); a day without a known colour is taken as blue."""
    prices = []
    for index, moment in enumerate(moments):
        offpeak = in_any(moment, tariff.offpeak_windows, tz)
        if tariff.kind == "base":
            prices.append(float(tariff.base_price_eur_per_kwh or 0.0))
        elif tariff.kind == "hp_hc":
            price = tariff.offpeak_price_eur_per_kwh if offpeak else tariff.peak_price_eur_per_kwh
            prices.append(float(price or 0.0))
        elif tariff.kind == "tempo":
            local = moment.astimezone(tz)
            tempo_day = (local - timedelta(hours=6)).date().isoformat()
            colour = (tempo_colours or {}).get(tempo_day, "blue")
            prices.append(float(tariff.tempo_prices_eur_per_kwh[colour]["offpeak" if offpeak else "peak"]))
        else:
            if spot_eur_per_kwh is None:
                raise ValueError("a spot tariff needs the spot price series")
            prices.append(float(spot_eur_per_kwh[index]))
    return prices
