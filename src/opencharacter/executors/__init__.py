"""Executors run a stage over its items: locally, on Ray, or one shard of them at a time."""
