"""The default prices: what a worker slot costs per hour by hardware class, and the reserved
discount. Operators override both in the settings (`prices_per_hour_usd`, `reserved_discount`)."""

from __future__ import annotations

#: Hourly prices in USD per worker slot, by hardware class (cpu: per core-slot).
DEFAULT_PRICES_PER_HOUR_USD: dict[str, float] = {
    "cpu": 0.05,
    "RTX4090": 0.34,
    "L4": 0.44,
    "L40S": 0.79,
    "A100": 1.19,
    "H100": 1.99,
    "H200": 3.59,
}

#: The reserved rate's discount on the hourly price, for hardware classes not in
#: `Settings.reserved_discount`: a reserved worker costs 75% of the per-second rate.
DEFAULT_RESERVED_DISCOUNT = 0.25
