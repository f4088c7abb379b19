"""Moved to `coldbrew.control.cache`: the node (`platform.py`) builds the cache, so it lives below
the gateway. Kept so that older imports of `coldbrew.api.cache` keep working."""

from coldbrew.control.cache import MemoryCache, RedisCache, ResultCache, cache_key, make_cache

__all__ = ["MemoryCache", "RedisCache", "ResultCache", "cache_key", "make_cache"]
