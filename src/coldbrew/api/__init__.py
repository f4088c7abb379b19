"""The gateway: HTTP routes for invocation (RunPod-compatible) and management."""
