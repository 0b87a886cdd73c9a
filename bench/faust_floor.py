"""The floor of bench/ingest.py: a Faust agent that only counts the events it takes.

Same Faust, same broker, same batch size and raw bytes as the stream worker's agents, and no work:
what a Faust agent costs on this machine before any of ours. Each batch appends
"<perf_counter> <events so far>" to FLOOR_OUT, from which the bench reads the rate.

    FLOOR_APP_ID=... FLOOR_TOPIC=... FLOOR_OUT=... faust -A bench.faust_floor worker
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import cast

import faust

BATCH = int(os.environ.get("FLOOR_BATCH", "5000"))
OUT = Path(os.environ["FLOOR_OUT"])

app = faust.App(
    os.environ["FLOOR_APP_ID"],
    broker=f"kafka://{os.environ.get('KAFKA_BOOTSTRAP_SERVERS', '127.0.0.1:9092')}",
    store="memory://",
    datadir=os.environ.get("FLOOR_DATA_DIR", "var/faust-floor"),
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
)
topic = app.topic(os.environ["FLOOR_TOPIC"], key_type=bytes, value_type=bytes)


@app.agent(topic)
async def count(stream: faust.StreamT[bytes]) -> None:
    total = 0
    with OUT.open("a") as out:
        # An agent is handed a Stream; StreamT, the type Faust gives agents, lacks take_events.
        async for events in cast(faust.Stream[bytes], stream).take_events(BATCH, within=0.1):
            total += len(events)
            out.write(f"{time.perf_counter()} {total}\n")
            out.flush()
