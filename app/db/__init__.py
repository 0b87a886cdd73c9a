"""PostgreSQL: models, the session owner and the queries."""
