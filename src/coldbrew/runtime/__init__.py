"""What runs inside worker processes: loading user code, serving jobs, capturing logs."""
