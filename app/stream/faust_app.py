"""The Faust app, alone: settings in, nothing of ours imported but the config and logging.

Agents, tables and web views register themselves on import; `autodiscover` names those modules
so `faust -A app.stream.faust_app worker` and `notify worker` load them all.
"""

from __future__ import annotations

import faust
from faust.stores import STORES

from app.config import get_settings
from app.core.logs import faust_logging_config
from app.kafka.connection import faust_broker
from app.stream import transport

settings = get_settings()
# Faust names table files after the table only: keep each app id's state apart.
datadir = settings.faust_data_dir / settings.faust_app_id
datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level

# rocksdb:// is our store, which sets a partition aside instead of crash-looping when it is
# ahead of its changelog (app/stream/table_store.py; imported by Faust when a table opens it).
STORES.aliases["rocksdb"] = "app.stream.table_store:Store"
# kafka:// is Faust's aiokafka transport with our fetch batching (app/stream/transport.py).
transport.install()

app = faust.App(
    # The app id is the Kafka consumer group and the prefix of the changelog topics.
    settings.faust_app_id,
    **faust_broker(settings),  # servers, TLS and SASL as for every Kafka client of ours
    store=settings.faust_store,
    datadir=str(datadir),
    # Only these modules: an `origin` would make Faust import (scan) the whole `app` package.
    autodiscover=["app.agents", "app.tables", "app.stream.web"],
    topic_partitions=settings.topic_partitions,
    # Events are decoded by app.contracts (size limit, schema), so Faust hands over raw bytes.
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=settings.faust_session_timeout_s,
    broker_heartbeat_interval=1.0,
    broker_rebalance_timeout=max(2 * settings.faust_session_timeout_s, 10.0),
    web_port=settings.faust_web_port,
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    # Not Faust's exactly_once mode: PostgreSQL offsets give the effect (docs/stream-semantics.md).
    processing_guarantee="at_least_once",
    logging_config=faust_logging_config(settings.log_format),
)
