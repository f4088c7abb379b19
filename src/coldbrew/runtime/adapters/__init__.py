"""Adapters that run model classes written for other platforms as coldbrew models."""
