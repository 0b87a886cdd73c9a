"""Kafka through confluent-kafka: topic administration, and a producer that counts its reports."""
