"""Where workers run: `local` processes on this machine (Ray for clusters, later)."""
