"""The stream worker (Faust): topics, batch ingest into PostgreSQL, gaps, watchdog, web views."""
