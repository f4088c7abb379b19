"""Several gateways on one database: leases, endpoint ownership, forwarding, catalog news."""
