"""/metrics stays the same size however many devices a service polls, and counts devices by health."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from drivers.base import HealthState
from gridctl.service.metrics import ServiceMetrics

PROTOCOLS = ("modbus", "bacnet", "opcua")
SITES = [f"district-{i:02d}" for i in range(10)]


def _scrape(devices_per_site: int) -> tuple[bytes, dict[tuple[str, ...], float]]:
    metrics = ServiceMetrics()
    states = list(HealthState)
    for rounds in range(2):
        for site in SITES:
            for n in range(devices_per_site):
                # Every device changes health between the two rounds: the counts must follow.
                health = states[(n + rounds) % len(states)]
                metrics.observe_poll(site, f"meter-{n:05d}", PROTOCOLS[n % 3], lateness_s=0.01 * (n % 50),
                                     duration_s=0.02, health=health, qualities={"good": 17, "bad": 1},
                                     missed_ticks=n % 2)
    body = metrics.render()
    samples = {(s.name, *sorted(s.labels.items())): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    return body, samples


def test_a_scrape_is_as_large_for_ten_thousand_devices_as_for_sixty():
    _small, small_samples = _scrape(6)
    large, large_samples = _scrape(1000)
    assert set(small_samples) == set(large_samples)
    assert len(large) < 100_000, len(large)
    assert b"meter-" not in large


def test_devices_are_counted_by_site_protocol_and_health_at_their_last_poll():
    _body, samples = _scrape(300)
    devices = {key: value for key, value in samples.items() if key[0] == "gridctl_devices"}
    assert sum(devices.values()) == 300 * len(SITES)
    # Second round: device n has state (n + 1) % 3; modbus devices are n % 3 == 0 -> degraded.
    key = ("gridctl_devices", ("health", "degraded"), ("protocol", "modbus"), ("site", "district-00"))
    assert devices[key] == 100
    assert samples[("gridctl_polled_readings_total", ("protocol", "bacnet"), ("quality", "good"), ("site", "district-03"))] \
        == 2 * 100 * 17
    assert samples[("gridctl_polls_total", ("protocol", "opcua"), ("site", "district-09"))] == 2 * 100
    assert samples[("gridctl_poll_lateness_seconds_count", ("protocol", "modbus"))] == 2 * 100 * len(SITES)
