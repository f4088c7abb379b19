"""Every worker-second and every job, priced by hardware class and reported by period."""
