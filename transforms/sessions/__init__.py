"""Deduplication and sessionization: the one session rule, in batch and in event time."""
