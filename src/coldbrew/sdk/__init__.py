"""What users import: the `App` that declares models, and the HTTP `Client`."""
