"""Ways results leave coldbrew besides the HTTP response: webhooks (pipelines, triggers later)."""
