"""A trace-driven simulator of coldbrew at internet scale: `python -m coldbrew.sim`.

Discrete events on a simulated clock (no wall time): request arrivals per endpoint, FIFO queues,
worker slots, cold-start paths, node provisioning and per-second prices, with scaling decided
by the real `coldbrew.control.autoscaler.decide`. Nothing in coldbrew imports this package.
"""
