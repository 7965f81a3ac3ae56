"""The small site the historian tests store: two dwelling meters, PV power, a temperature."""

from __future__ import annotations

SITE = {
    "id": "test-site",
    "name": "Test site",
    "timezone": "Europe/Paris",
    "location": {"latitude": 50.63, "longitude": 3.06},
    "grid": {
        "import_limit_kw": 250,
        "export_limit_kw": 100,
        "subscribed_power_kw": 200,
        "points": {"power": "meters/grid_power", "import_energy": "meters/grid_import"},
    },
    "tariff": {"kind": "base", "base_price_eur_per_kwh": 0.2},
    "buildings": [{"id": "b1", "use": "residential"}],
    "devices": [
        {
            "id": "meters",
            "protocol": "modbus",
            "host": "127.0.0.1",
            "points": [
                # Watt-hours, no known maximum: a drop is a reset.
                {"id": "d1_energy", "unit": "Wh", "kind": "energy_counter", "function": "holding_register",
                 "register": 0, "data_type": "uint32"},
                # Wraps at 100,000 kWh.
                {"id": "d2_energy", "unit": "kWh", "kind": "energy_counter", "function": "holding_register",
                 "register": 2, "data_type": "uint32", "min": 0, "max": 100000},
                {"id": "grid_power", "unit": "kW", "kind": "measurement", "function": "input_register",
                 "register": 14, "data_type": "float32"},
                {"id": "grid_import", "unit": "kWh", "kind": "energy_counter", "function": "holding_register",
                 "register": 16, "data_type": "uint32"},
                {"id": "pv_power", "unit": "kW", "kind": "measurement", "function": "input_register",
                 "register": 10, "data_type": "float32"},
                {"id": "temperature", "unit": "°C", "kind": "measurement", "function": "input_register",
                 "register": 12, "data_type": "float32"},
            ],
        }
    ],
    "dwellings": [
        {"id": "d1", "building": "b1", "floor_area_m2": 60, "meter": "meters/d1_energy"},
        {"id": "d2", "building": "b1", "floor_area_m2": 80, "meter": "meters/d2_energy"},
    ],
}
