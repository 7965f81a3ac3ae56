"""A writing process for the crash test: records numbered batches through a Recorder and prints each
batch number once `record()` has returned (the batch is then in the database or in the spool).

    python spool_writer.py DSN SPOOL_PATH BASE_ISO_TIMESTAMP
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta

from drivers.base import Quality, Reading
from gridctl.history.recorder import Recorder
from gridctl.history.spool import Spool
from gridctl.history.timescale import TimescaleHistorian

SITE = "test-site"
POINTS = [f"crash/p{i}" for i in range(10)]
STEP = timedelta(milliseconds=10)


def batch(base: datetime, number: int) -> list[Reading]:
    return [Reading(p, base + number * STEP, float(number), Quality.GOOD) for p in POINTS]


async def main(dsn: str, spool_path: str, base: datetime) -> None:
    historian = TimescaleHistorian(dsn, timeout_s=1)
    await historian.open()
    recorder = Recorder(historian, Spool(spool_path), write_timeout_s=2, retry_max_s=1)
    await recorder.start()
    number = 0
    while True:
        await recorder.record(SITE, batch(base, number))
        print(number, flush=True)
        number += 1
        await asyncio.sleep(0.005)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])))
