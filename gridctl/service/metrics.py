"""Prometheus metrics of the service: poll latency, device health, writes, solve time, spool depth, and
how well the forecasts did (by quantity and lead time) and which thermal model each zone's plans use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from drivers.base import HealthState
from gridctl.forecast.forecaster import ForecastReport
from gridctl.forecast.identify import ThermalEstimate

HEALTH_VALUE = {HealthState.OK: 0, HealthState.DEGRADED: 1, HealthState.OFFLINE: 2}
# Forecast accuracy in /metrics is over this last stretch.
ACCURACY_WINDOW = timedelta(days=7)


class ServiceMetrics:
    """One registry per service, so tests and several services in one process don't collide."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.poll_seconds = Histogram(
            "gridctl_poll_duration_seconds", "Time to read all points of one device", ["site", "device"],
            registry=self.registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.device_health = Gauge(
            "gridctl_device_health", "Device health: 0 ok, 1 degraded, 2 offline", ["site", "device"],
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

    def observe_poll(self, site: str, device: str, seconds: float, health: HealthState) -> None:
        self.poll_seconds.labels(site, device).observe(seconds)
        self.device_health.labels(site, device).set(HEALTH_VALUE[health])

    def track_spool(self, site: str, depth: Callable[[], float]) -> None:
        self.spool_depth.labels(site).set_function(depth)

    def track_history(self, available: Callable[[], float], counts: Callable[[str], float]) -> None:
        self.history_available.set_function(available)
        for path in ("written", "spooled", "flushed"):
            self.readings.labels(path).set_function(lambda path=path: counts(path))

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

