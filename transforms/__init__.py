"""Runner-agnostic Beam transforms of shopstream and the pure functions under them.

- ``parse``: legacy exports and canonical JSON lines to typed records;
- ``enrich``: user agents, countries, channels, pseudonyms, the product dimension;
- ``sessions``: deduplication and the one session rule, in batch and in event time;
- ``derived``: recommender inputs and retention features;
- here: the records, their coder, dead letters, event time, accounting, backfill
  days and the orders built from order lines, which every part shares.
"""
