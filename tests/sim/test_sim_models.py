"""Unit tests of the physics models, each against a closed-form expectation."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sim.physics.battery import Battery
from sim.physics.energy import EnergyCounter, Lease, split_at
from sim.physics.ev import Charger, PlugState, Session, SessionSchedule
from sim.physics.lighting import LightingZone, PublicLightingCircuit
from sim.physics.loads import Household
from sim.physics.pv import PvArray
from sim.physics.thermal import HeatPump, RcZone, carnot_cop
from sim.physics.weather import Weather

T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def _charger_with_car(energy_kwh: float = 50.0) -> Charger:
    charger = Charger(None, phases=3, min_current_a=6.0, max_current_a=32.0)
    charger.plug_in(Session(T0, T0 + timedelta(hours=8), energy_kwh))
    return charger


@pytest.mark.parametrize("current_a", [6.0, 10.0, 16.0, 32.0])
def test_charging_power_follows_the_current_limit(current_a: float) -> None:
    charger = _charger_with_car()
    charger.advance(T0, T0 + timedelta(minutes=1), current_a)
    assert charger.power_kw == pytest.approx(3 * 230.0 * current_a / 1000.0)
    assert charger.state is PlugState.CHARGING


@pytest.mark.parametrize("current_a", [0.0, 3.0, 5.9])
def test_charging_stops_below_six_amps(current_a: float) -> None:
    charger = _charger_with_car()
    charger.advance(T0, T0 + timedelta(minutes=1), current_a)
    assert charger.power_kw == 0.0
    assert charger.state is PlugState.PLUGGED


def test_charging_is_capped_by_the_cars_need_and_finishes() -> None:
    charger = _charger_with_car(energy_kwh=5.0)
    t = T0
    for _ in range(60):
        charger.advance(t, t + timedelta(minutes=1), 32.0)
        t += timedelta(minutes=1)
    assert charger.session_energy_kwh == pytest.approx(5.0)
    assert charger.state is PlugState.FINISHED
    assert charger.power_kw == 0.0


def test_session_energy_resets_per_session_and_lifetime_counter_keeps_counting() -> None:
    tz = PARIS
    schedule = SessionSchedule(seed=4, charger_id="charger-01", kind="workplace", tz=tz)
    charger = Charger(schedule, lifetime_kwh=1000.0)
    t = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday
    end = t + timedelta(days=14)
    seen_sessions: list[datetime] = []
    powers: list[tuple[float, float]] = []
    while t < end:
        step_end = t + timedelta(minutes=5)
        charger.advance(t, step_end, 16.0)
        powers.append((charger.power_kw, 300.0))
        if charger.session is not None and (not seen_sessions or seen_sessions[-1] != charger.session.arrival):
            seen_sessions.append(charger.session.arrival)
            # A new session starts from zero (at most one step of charging in).
            assert charger.session_energy_kwh <= 3 * 230 * 16 / 1000 * 300 / 3600 + 1e-9
        t = step_end
    assert len(seen_sessions) >= 5, "two weeks of workplace charging should see several sessions"
    delivered = sum(requested if requested <= delivered + 1e-6 else delivered
                    for requested, delivered in charger.served.values())
    assert charger.energy.energy_kwh - 1000.0 == pytest.approx(delivered)
    # The lifetime counter is exactly the integral of the reported power.
    assert charger.energy.energy_kwh - 1000.0 == pytest.approx(sum(p * s / 3600 for p, s in powers))


def test_workplace_sessions_follow_the_statistics() -> None:
    schedule = SessionSchedule(seed=1, charger_id="x", kind="workplace", tz=PARIS)
    arrivals, durations, energies = [], [], []
    day = datetime(2026, 1, 5, tzinfo=PARIS).date()
    for n in range(400):
        for session in schedule._draw_day(day + timedelta(days=n)):
            if session.arrival.astimezone(PARIS).hour < 13:
                arrivals.append(session.arrival.astimezone(PARIS).hour + session.arrival.minute / 60)
                durations.append((session.departure - session.arrival).total_seconds() / 3600)
                energies.append(session.energy_kwh)
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    assert 8.25 < median(arrivals) < 9.25
    assert 4.2 < median(durations) < 5.6
    assert 7.5 < median(energies) < 10.0


def test_sessions_are_a_function_of_seed_and_day() -> None:
    a = SessionSchedule(seed=9, charger_id="c", kind="home", tz=PARIS)
    b = SessionSchedule(seed=9, charger_id="c", kind="home", tz=PARIS)
    c = SessionSchedule(seed=10, charger_id="c", kind="home", tz=PARIS)
    days = [T0 + timedelta(days=n) for n in range(30)]
    assert [a.around(d) for d in days] == [b.around(d) for d in reversed(days)][::-1]
    assert [a.around(d) for d in days] != [c.around(d) for d in days]


@pytest.mark.parametrize("dimming_pct", [0.0, 25.0, 50.0, 80.0, 100.0])
def test_lighting_power_follows_dimming(dimming_pct: float) -> None:
    zone = LightingZone(installed_power_kw=6.0, rated_illuminance_lx=650.0, daylight_factor=0.02)
    zone.advance(60.0, dimming_pct, outdoor_illuminance_lx=10_000.0)
    assert zone.power_kw == pytest.approx(6.0 * dimming_pct / 100)
    assert zone.illuminance_lx == pytest.approx(200.0 + 650.0 * dimming_pct / 100)


def test_public_lighting_is_on_only_when_dark() -> None:
    circuit = PublicLightingCircuit(installed_power_kw=4.2)
    assert circuit.advance(60.0, 50.0, dark=True) == pytest.approx(2.1)
    assert circuit.advance(60.0, 50.0, dark=False) == 0.0
    assert circuit.energy.energy_kwh == pytest.approx(2.1 / 60)


def test_1r1c_zone_matches_the_rc_solution() -> None:
    r, c = 0.8, 40.0
    zone = RcZone(r, c, air_temperature_c=12.0)
    outdoor, heat = 2.0, 20.0
    for _ in range(600):  # 10 h in 1-minute steps
        zone.advance(60.0, outdoor, heat)
    equilibrium = outdoor + r * heat
    expected = equilibrium + (12.0 - equilibrium) * math.exp(-10.0 / (r * c))
    assert zone.air_temperature_c == pytest.approx(expected, abs=1e-9)
    assert zone.air_temperature_c > 12.0, "heating warms the zone"


def test_1r1c_zone_decays_toward_outdoor_without_heating() -> None:
    zone = RcZone(0.8, 40.0, air_temperature_c=20.0)
    zone.advance(3600.0 * 32, 5.0, 0.0)  # one time constant
    assert zone.air_temperature_c == pytest.approx(5.0 + 15.0 / math.e)


def test_2r2c_zone_matches_a_fine_numerical_integration() -> None:
    r, c, re, ce = 0.5, 25.0, 0.4, 150.0
    zone = RcZone(r, c, re, ce, air_temperature_c=18.0, envelope_temperature_c=12.0)
    ta, te = 18.0, 12.0
    outdoor, heat = -3.0, 30.0
    dt_h = 1.0 / 3600.0
    for _ in range(4 * 3600):  # 4 h, RK4 with 1-second steps

        def f(a: float, e: float) -> tuple[float, float]:
            return ((e - a) / r + heat) / c, ((a - e) / r + (outdoor - e) / re) / ce

        k1 = f(ta, te)
        k2 = f(ta + dt_h / 2 * k1[0], te + dt_h / 2 * k1[1])
        k3 = f(ta + dt_h / 2 * k2[0], te + dt_h / 2 * k2[1])
        k4 = f(ta + dt_h * k3[0], te + dt_h * k3[1])
        ta += dt_h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        te += dt_h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    zone.advance(4 * 3600.0, outdoor, heat)
    assert zone.air_temperature_c == pytest.approx(ta, abs=1e-6)
    assert zone.envelope_temperature_c == pytest.approx(te, abs=1e-6)


def test_2r2c_steady_state_is_outdoor_plus_heat_times_total_resistance() -> None:
    zone = RcZone(0.5, 25.0, 0.4, 150.0, air_temperature_c=20.0, envelope_temperature_c=20.0)
    zone.advance(3600.0 * 24 * 60, 0.0, 10.0)
    assert zone.air_temperature_c == pytest.approx(9.0, abs=1e-6)
    assert zone.envelope_temperature_c == pytest.approx(4.0, abs=1e-6)


@pytest.mark.parametrize(("outdoor_c", "cop"), [(-7.0, 3.3), (2.0, 4.0), (7.0, 4.5)])
def test_heat_pump_cop_matches_published_figures(outdoor_c: float, cop: float) -> None:
    assert carnot_cop(outdoor_c, 35.0, 0.55, 5.0) == pytest.approx(cop, abs=0.1)


def test_heat_pump_controller_brings_the_zone_to_its_setpoint_within_its_power() -> None:
    zone = RcZone(0.8, 40.0, air_temperature_c=14.0)
    heat_pump = HeatPump(max_electric_power_kw=40.0)
    peak = 0.0
    for _ in range(24 * 120):  # a day in 30-second steps
        heat = heat_pump.control(30.0, 19.0, zone.air_temperature_c, 0.0)
        peak = max(peak, heat_pump.electric_power_kw)
        zone.advance(30.0, 0.0, heat)
    assert zone.air_temperature_c == pytest.approx(19.0, abs=0.1)
    assert peak <= 40.0 + 1e-9
    # At steady state the heat pump replaces the losses: (19 − 0) / 0.8 kW thermal.
    assert heat_pump.thermal_power_kw == pytest.approx(19.0 / 0.8, rel=0.02)


def test_disabled_heat_pump_draws_nothing() -> None:
    heat_pump = HeatPump(max_electric_power_kw=40.0)
    assert heat_pump.control(30.0, 21.0, 15.0, 0.0, enabled=False) == 0.0
    assert heat_pump.electric_power_kw == 0.0


def test_battery_soc_integrates_with_efficiency() -> None:
    battery = Battery(200.0, 100.0, 100.0, 0.95, 0.95, 10.0, 95.0, soc_pct=50.0)
    battery.advance(3600.0, 40.0)
    assert battery.soc_pct == pytest.approx(50.0 + 40.0 * 0.95 / 200.0 * 100.0)
    battery.advance(1800.0, -40.0)
    assert battery.soc_pct == pytest.approx(69.0 - 20.0 / 0.95 / 200.0 * 100.0)
    assert battery.charged.energy_kwh == pytest.approx(40.0)
    assert battery.discharged.energy_kwh == pytest.approx(20.0)


def test_battery_respects_power_and_soc_bounds() -> None:
    battery = Battery(200.0, 100.0, 80.0, 0.95, 0.95, 10.0, 95.0, soc_pct=90.0)
    assert battery.advance(60.0, 500.0) == pytest.approx(100.0)
    for _ in range(120):
        battery.advance(60.0, 100.0)
        assert battery.soc_pct <= 95.0 + 1e-9
    assert battery.soc_pct == pytest.approx(95.0)
    assert battery.power_kw == pytest.approx(0.0)
    assert battery.advance(60.0, -500.0) == pytest.approx(-80.0)
    for _ in range(24 * 60):
        battery.advance(60.0, -80.0)
        assert battery.soc_pct >= 10.0 - 1e-9
    assert battery.soc_pct == pytest.approx(10.0)


def test_pv_is_capped_by_inverter_and_curtailment() -> None:
    pv = PvArray(peak_power_kwp=120.0, inverter_max_power_kw=100.0)
    assert pv.advance(60.0, 1000.0, 100.0) == pytest.approx(100.0)
    assert pv.advance(60.0, 1000.0, 30.0) == pytest.approx(30.0)
    assert pv.throttled
    assert pv.advance(60.0, 500.0, 100.0) == pytest.approx(120.0 * 0.86 * 0.5 * 0.97)
    assert pv.advance(60.0, 0.0, 100.0) == 0.0


def test_counters_equal_the_integral_of_power() -> None:
    counter = EnergyCounter(100.0)
    powers = [(3.5, 60.0), (0.0, 30.0), (12.25, 7.5), (-1.0, 3600.0)]
    for power, seconds in powers:
        counter.add(power, seconds)
    assert counter.energy_kwh == pytest.approx(100.0 + sum(p * s / 3600 for p, s in powers), abs=1e-12)


def test_lease_expires_after_its_timeout() -> None:
    lease = Lease(60.0)
    assert not lease.active(T0)
    lease.renew(T0)
    assert lease.active(T0 + timedelta(seconds=59))
    assert not lease.active(T0 + timedelta(seconds=60))
    assert split_at(T0, T0 + timedelta(seconds=90), [lease.expires_at]) == [
        (T0, T0 + timedelta(seconds=60)), (T0 + timedelta(seconds=60), T0 + timedelta(seconds=90))]


def test_lille_weather_is_plausible_over_a_year() -> None:
    weather = Weather(50.63, 3.06, seed=2)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stride_days = 4  # every fourth day of the year stands for its neighbours
    temperatures: dict[int, list[float]] = {}
    ghi_kwh = poa_kwh = 0.0
    for day in range(0, 365, stride_days):
        for hour in range(24):
            sample = weather.sample(start + timedelta(days=day, hours=hour, minutes=30))
            temperatures.setdefault(day, []).append(sample.temperature_c)
            ghi_kwh += sample.ghi_w_per_m2 / 1000 * stride_days
            poa_kwh += sample.plane_of_array_w_per_m2(35.0, 180.0) / 1000 * stride_days
    every = [t for day in temperatures.values() for t in day]
    assert 10.3 < sum(every) / len(every) < 12.3
    january = [t for day, values in temperatures.items() if day < 31 for t in values]
    july = [t for day, values in temperatures.items() if 181 <= day < 212 for t in values]
    assert sum(january) / len(january) < 7.0 < 16.0 < sum(july) / len(july)
    assert 950 < ghi_kwh < 1250, "Lille receives ~1,050-1,100 kWh/m² a year"
    # Through the array's performance ratio and inverter, the yield lands near Lille's ~1,000 kWh/kWp.
    assert 900 < poa_kwh * 0.86 * 0.97 < 1100


def test_weather_is_deterministic_and_night_is_dark() -> None:
    noon = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
    midnight = datetime(2026, 6, 21, 23, 0, tzinfo=UTC)
    assert Weather(seed=5).sample(noon) == Weather(seed=5).sample(noon)
    assert Weather(seed=5).sample(noon) != Weather(seed=6).sample(noon)
    assert Weather(seed=5).sample(midnight).dark
    assert not Weather(seed=5).sample(noon).dark
    assert Weather(seed=5).sample(noon).sun.elevation_deg == pytest.approx(62.6, abs=0.5)


def test_households_use_about_two_and_a_half_megawatt_hours_a_year() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    totals = []
    for n in range(4):
        home = Household(f"d{n}", seed=7, tz=PARIS, floor_area_m2=65.0)
        for step in range(365 * 24 * 2):
            home.advance(start + timedelta(minutes=30 * step), 1800.0)
        totals.append(home.energy.energy_kwh)
    mean = sum(totals) / len(totals)
    assert 2000 < mean < 3000
    assert len({round(t) for t in totals}) == len(totals), "households differ"


def test_household_profile_peaks_in_the_evening() -> None:
    home = Household("d1", seed=7, tz=PARIS)
    day = datetime(2026, 3, 10, tzinfo=PARIS)  # a Tuesday
    hourly = []
    for hour in range(24):
        hourly.append(sum(home.demand_kw(day + timedelta(hours=hour, minutes=m)) for m in range(0, 60, 5)))
    assert max(range(24), key=hourly.__getitem__) in (18, 19, 20, 21)
    assert hourly[8] > hourly[3] and hourly[19] > hourly[14]
