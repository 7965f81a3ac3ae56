"""`gridctl demo`: the three demonstrators on simulated devices, on accelerated simulated time.

It back-fills a few days of history from the simulation (so forecasts, rollups and the residents'
pages have data), then runs the service against the simulated devices over the real protocols, with
the API and the web pages, until Ctrl-C.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.base import Quality, Reading
from gridctl import paths
from gridctl.api.store import Role
from gridctl.config import load_site
from gridctl.config.models import WeatherProvider
from gridctl.history import Historian, SiteReadings
from gridctl.history.base import utc_now
from gridctl.service.runner import Cadence, ServiceHost, SiteOptions
from gridctl.service.web import MetricsAccess, attach_api, serve_until_stopped
from gridctl.simulate.loop import TIMEOUT_POINTS
from sim.core import SimClock
from sim.physics.nwp import NumericalForecast
from sim.site import SiteSimulation, free_port_offset, ports_free
from sim.weather_server import WeatherServer

log = logging.getLogger("gridctl.demo")

# Simulated-time cadence: at one simulated hour per 10 s, dispatch runs about once a wall second.
DEMO_CADENCE = Cadence(dispatch=timedelta(minutes=5), optimise=timedelta(hours=1), renew=timedelta(minutes=5),
                       rollups=timedelta(hours=1), retention=timedelta(days=1), replan_gap=timedelta(minutes=15))
BACKFILL_STEP = timedelta(minutes=15)


@dataclass(frozen=True)
class DemoUser:
    role: str
    scope: list[str]
    token: str
    page: str
    name: str
    password: str


def simulated_readings(simulation: SiteSimulation, moment: datetime) -> SiteReadings:
    """Every numeric point of a simulated site at one moment, under its site."""
    readings = [Reading(f"{device.id}/{point_id}", moment, value, Quality.GOOD)
                for device in simulation.devices.values()
                for point_id, value in device.values.items() if isinstance(value, bool | int | float)]
    return SiteReadings(simulation.site.id, readings)


async def backfill(simulations: Sequence[SiteSimulation], historian: Historian, clock: SimClock,
                   until: datetime) -> dict[str, int]:
    """Step the physics up to `until`, storing every numeric point of every site each step (one write
    for all the sites); returns the readings stored per site."""
    stored = {simulation.site.id: 0 for simulation in simulations}
    moment = clock.now()
    while moment < until:
        moment = min(moment + BACKFILL_STEP, until)
        clock.advance(moment - clock.now())
        groups = []
        for simulation in simulations:
            simulation.step(moment)
            groups.append(simulated_readings(simulation, moment))
            stored[simulation.site.id] += len(groups[-1].readings)
        await historian.write(groups, received_at=moment)
    await historian.refresh_rollups()
    return stored


async def create_users(app, sites: Sequence[str], resident_dwelling: str | None, now: datetime) -> list[DemoUser]:
    store = app.state.context.store
    users = []
    stamp = now.strftime("%Y%m%dT%H%M%S")
    wanted = [("operator", list(sites), "/ui/operator"), ("manager", list(sites), "/ui/manager")]
    if resident_dwelling:
        wanted.insert(0, ("resident", [resident_dwelling], "/ui/resident"))
    for role, scope, page in wanted:
        user, token = await store.add_user(f"demo-{role}-{stamp}", Role(role), scope, now, timedelta(days=30))
        password = secrets.token_urlsafe(12)
        await app.state.context.signin.set_password(user, password, utc_now())
        users.append(DemoUser(role, scope, token, page, user.name, password))
    return users


async def run_demo(site_paths: Sequence[Path], *, db: Path, address: str, port: int, speed: float,
                   backfill_days: float, seed: int, metrics: MetricsAccess | None = None) -> int:
    metrics = metrics or MetricsAccess()
    sites = [load_site(path) for path in site_paths]
    wall_now = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = SimClock(wall_now - timedelta(days=backfill_days))
    # One offset that frees every site's ports (the demonstrators' own ports when nothing holds them).
    offset = 0 if ports_free(0, *sites) else free_port_offset(*sites)
    # Minute physics steps keep up with a clock hundreds of times faster than the wall.
    simulations = [SiteSimulation(path, clock, seed=seed, port_offset=offset, max_step=timedelta(minutes=1))
                   for path in site_paths]
    lease_s = 3 * DEMO_CADENCE.dispatch.total_seconds()
    for simulation in simulations:
        for device in simulation.devices.values():
            for point_id in TIMEOUT_POINTS:
                if point_id in device.points:
                    device.set(point_id, lease_s)
            if device.watchdog is not None:
                # Heartbeats come with the lease renewals, a few wall seconds apart at this speed.
                device.watchdog.timeout_s = max(device.watchdog.timeout_s, 6 * DEMO_CADENCE.renew.total_seconds())
    db.parent.mkdir(parents=True, exist_ok=True)
    # Each demonstrator reads its weather forecasts over a provider's API, as a deployment does: here a
    # simulated provider on loopback whose forecasts err as real ones do.
    weather = [WeatherServer(NumericalForecast(simulation.physics.weather, seed), clock) for simulation in simulations]
    urls = [await server.start() for server in weather]
    options = [SiteOptions(site=path, port_offset=offset, cadence=DEMO_CADENCE, weather=WeatherProvider(url=url))
               for path, url in zip(site_paths, urls, strict=True)]
    host = ServiceHost(options, str(db), paths.spool_dir(), clock=clock, speed=speed, min_poll_s=2.0,
                       cadence=DEMO_CADENCE)
    await host.open_history()
    print(f"back-filling {backfill_days:g} days of history into {db} ...", flush=True)
    stored = await backfill(simulations, host.historian, clock, wall_now)
    print(f"  {sum(stored.values()):,} readings stored ("
          + ", ".join(f"{site} {count:,}" for site, count in stored.items()) + ")", flush=True)
    clock.set_speed(speed)
    for simulation in simulations:
        await simulation.start(step_interval_s=0.5)
    app = await attach_api(host, metrics)
    resident = next((f"{s.id}/{s.dwellings[0].id}" for s in sites if s.dwellings), None)
    users = await create_users(app, [s.id for s in sites], resident, clock.now())
    base = f"http://{address}:{port}"

    def announce() -> None:
        print(f"\ngridctl demo: {', '.join(s.id for s in sites)} on simulated devices, "
              f"{speed:g}× real time (one simulated hour every {3600 / speed:.0f} s)")
        for simulation in simulations:
            for listener in simulation.listeners:
                count = len(listener.device_ids)
                print(f"  {simulation.site.id:<20} {listener.protocol:<7} {listener.address}  "
                      f"({count} device{'s' if count > 1 else ''})")
        for simulation, url in zip(simulations, urls, strict=True):
            print(f"  {simulation.site.id:<20} weather {url}")
        print(f"\n  web pages   {base}/ui/login")
        print(f"  API         {base}/api/v1/openapi.json")
        where = f"http://{metrics.listen[0]}:{metrics.listen[1]}" if metrics.listen else base
        print(f"  metrics     {where}/metrics{' (bearer token required)' if metrics.token else ''}")
        print("\n  demo users (sign in on the pages with the name and password; the token is for the API):")
        for user in users:
            print(f"    {user.role:<9} {', '.join(user.scope):<45} {base}{user.page}\n"
                  f"              user {user.name}  password {user.password}\n"
                  f"              token {user.token}")
        print("\nCtrl-C stops.", flush=True)

    async def after_stop() -> None:
        for simulation in simulations:
            await simulation.stop()
        for server in weather:
            await server.stop()

    try:
        await serve_until_stopped(host, app, address, port, announce=announce, after_stop=after_stop,
                                  metrics=metrics)
    finally:
        print("stopped: setpoints relinquished, history flushed.", flush=True)
    return 0
