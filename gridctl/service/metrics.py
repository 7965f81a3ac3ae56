"""Prometheus metrics of the service: polls, device health, writes, solve time, history ingest.

No series is labelled by device: a scrape stays the same size whether the service polls a hundred
devices or ten thousand (per-device health is the API's `/api/v1/sites/{site}/devices`). Poll timings
are histograms per protocol; counts per site and protocol. Forecast accuracy is by site, quantity and
lead time, and each zone's thermal model by site and zone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from drivers.base import HealthState
from gridctl.forecast.forecaster import ForecastReport
from gridctl.forecast.identify import ThermalEstimate

# A `_created` timestamp beside every counter and histogram doubles a scrape and tells nothing a
# restart counter does not.
disable_created_metrics()

POLL_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Forecast accuracy in /metrics is over this last stretch.
ACCURACY_WINDOW = timedelta(days=7)


class ServiceMetrics:
    """One registry per service, so tests and several services in one process don't collide."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.poll_seconds = Histogram(
            "gridctl_poll_duration_seconds", "Time to read all points of one device", ["protocol"],
            registry=self.registry, buckets=POLL_BUCKETS_S)
        self.poll_lateness = Histogram(
            "gridctl_poll_lateness_seconds", "How long after its tick a device poll started", ["protocol"],
            registry=self.registry, buckets=POLL_BUCKETS_S)
        self.polls = Counter(
            "gridctl_polls_total", "Device polls", ["site", "protocol"], registry=self.registry)
        self.missed_ticks = Counter(
            "gridctl_poll_missed_ticks_total", "Poll ticks skipped because the device's previous poll still ran",
            ["site", "protocol"], registry=self.registry)
        self.polled_readings = Counter(
            "gridctl_polled_readings_total", "Readings polled, by quality", ["site", "protocol", "quality"],
            registry=self.registry)
        self.devices = Gauge(
            "gridctl_devices", "Devices by health at their last poll", ["site", "protocol", "health"],
            registry=self.registry)
        self.writes = Counter(
            "gridctl_writes_total", "Writes to equipment by outcome", ["site", "outcome"], registry=self.registry)
        self.solve_seconds = Histogram(
            "gridctl_optimiser_seconds", "Forecast and solve time of one optimisation", ["site"],
            registry=self.registry, buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120))
        self.optimiser_failures = Counter(
            "gridctl_optimiser_failures_total", "Optimisations that produced no schedule", ["site"],
            registry=self.registry)
        self.spool_depth = Gauge(
            "gridctl_spool_readings", "Readings of the site waiting in the local spool for the database", ["site"],
            registry=self.registry)
        self.history_available = Gauge(
            "gridctl_history_available", "1 while the history database takes readings, 0 while they are spooled",
            registry=self.registry)
        self.readings = Gauge(
            "gridctl_readings", "Readings since the start: written straight to the database, spooled, flushed "
                                "from the spool", ["path"], registry=self.registry)
        self.active_alarms = Gauge(
            "gridctl_active_alarms", "Active alarms by kind", ["site", "kind"], registry=self.registry)
        self.history = Gauge(
            "gridctl_history", "History ingest: group commits, failed writes and outages since the start, readings "
            "pending a commit, readings in the spool", ["what"], registry=self.registry)
        self._series: dict[tuple[str, str], tuple] = {}
        # (site, device) -> (protocol, health) at its last poll, to move it between the health counts.
        self._health: dict[tuple[str, str], tuple[str, str]] = {}
        # Labels stay bounded: quantity is load or pv, horizon 1h, 6h or 24h (lead times up to it).
        forecast_labels = ["site", "quantity", "horizon"]
        self.forecast_mae = Gauge(
            "gridctl_forecast_mae_kw", "Mean absolute error of the forecasts over the last 7 days, by lead time",
            forecast_labels, registry=self.registry)
        self.forecast_nrmse = Gauge(
            "gridctl_forecast_nrmse", "RMSE over the mean measured value, last 7 days, by lead time",
            forecast_labels, registry=self.registry)
        self.forecast_samples = Gauge(
            "gridctl_forecast_samples", "Quarter-hours scored in the forecast accuracy figures", forecast_labels,
            registry=self.registry)
        self.thermal_rmse = Gauge(
            "gridctl_thermal_model_rmse_k", "Day-ahead RMSE of a zone's thermal model on held-out days",
            ["site", "zone", "model"], registry=self.registry)
        self.thermal_identified = Gauge(
            "gridctl_thermal_model_identified", "1 when a zone's plans use its identified thermal model",
            ["site", "zone"], registry=self.registry)

    def observe_poll(self, site: str, device: str, protocol: str, *, lateness_s: float, duration_s: float,
                     health: HealthState, qualities: dict[str, int], missed_ticks: int = 0) -> None:
        """One finished device poll: its timings, readings by quality, and its health."""
        series = self._series.get((site, protocol))
        if series is None:
            # Looking a labelled child up costs more than observing it: once per site and protocol.
            series = self._series[(site, protocol)] = (
                self.poll_lateness.labels(protocol), self.poll_seconds.labels(protocol),
                self.polls.labels(site, protocol), self.missed_ticks.labels(site, protocol))
        lateness, duration, polls, missed = series
        lateness.observe(max(lateness_s, 0.0))
        duration.observe(max(duration_s, 0.0))
        polls.inc()
        if missed_ticks:
            missed.inc(missed_ticks)
        for quality, count in qualities.items():
            self.polled_readings.labels(site, protocol, quality).inc(count)
        now = (protocol, health.value)
        before = self._health.get((site, device))
        if before != now:
            if before is not None:
                self.devices.labels(site, *before).dec()
            self.devices.labels(site, *now).inc()
            self._health[(site, device)] = now

    def track_spool(self, site: str, depth: Callable[[], float]) -> None:
        self.spool_depth.labels(site).set_function(depth)

    def track_history(self, available: Callable[[], float], counts: Callable[[str], float],
                      figures: Callable[[], dict[str, float]] | None = None) -> None:
        """The recorder's state and counters, read at each scrape."""
        self.history_available.set_function(available)
        for path in ("written", "spooled", "flushed"):
            self.readings.labels(path).set_function(lambda path=path: counts(path))
        for what in (figures() if figures else {}):
            self.history.labels(what).set_function(lambda what=what: figures()[what])

    def observe_forecasts(self, site: str, report: ForecastReport, now: datetime) -> None:
        for figure in report.accuracy.figures(now - ACCURACY_WINDOW, None):
            labels = (site, figure.quantity, figure.horizon)
            self.forecast_mae.labels(*labels).set(figure.mae_kw)
            self.forecast_nrmse.labels(*labels).set(figure.nrmse)
            self.forecast_samples.labels(*labels).set(figure.samples)
        for zone, estimate in report.identified.items():
            if not isinstance(estimate, ThermalEstimate):
                continue
            self.thermal_identified.labels(site, zone).set(1.0 if estimate.identified else 0.0)
            found = estimate.identification
            if found is not None:
                self.thermal_rmse.labels(site, zone, "identified").set(found.held_out.multi_step_rmse_k)
                self.thermal_rmse.labels(site, zone, "site_file").set(found.site_file_held_out.multi_step_rmse_k)

    def render(self) -> bytes:
        return generate_latest(self.registry)

