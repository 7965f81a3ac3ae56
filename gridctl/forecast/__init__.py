"""Forecasting: everything gridctl predicts, learns from its own measurements, and how well it did.

One module per forecast; the site forecaster ties them together and each asset adapter's forecast
model (`gridctl.assets`) calls into them for its own part.

- `forecaster`: the site forecaster (`SignalForecaster`): observes each cycle, learns from
  quarter-hour means of fresh readings kept by age, forecasts a horizon, scores itself;
- `forecasts`: what one optimisation receives (`Forecasts`, `EvSessionForecast`);
- `load`: the load gridctl does not schedule;
- `sun`, `sky`, `pv`: clear sky and darkness, the clear-sky index, PV output and its calibration;
- `weather`, `openmeteo`: a weather provider's forecasts, and the outdoor temperature without one;
- `prices`, `carbon`: import prices from the tariff, grid carbon intensity;
- `ev`: plug states from the device's labels, EV sessions and the needs learnt from past ones;
- `identify`: zones' thermal models identified from their history;
- `accuracy`: forecast errors by lead time, once the actuals are in;
- `recent`: samples kept by age.

Nothing here imports the simulator.
"""
