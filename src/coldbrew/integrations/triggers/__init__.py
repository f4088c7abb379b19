"""Triggers: durable sources (cron, Redis Streams, PostgreSQL, object-store events, brokers) that
turn messages into jobs, and sinks that take their results somewhere. `base` is the contract."""
