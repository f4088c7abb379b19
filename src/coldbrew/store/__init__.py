"""Durable state: accounts, keys, endpoints, versions, jobs, logs, webhook deliveries, usage."""
