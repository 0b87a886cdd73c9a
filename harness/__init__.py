"""What the tests and the benchmarks share: fakes of outside services, real processes, rows.

Fakes stand in for services we cannot reach (SendGrid); everything of ours, and Kafka,
PostgreSQL and RabbitMQ, always runs for real.
"""
