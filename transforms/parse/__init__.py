"""Parsers: legacy exports and canonical JSON lines to typed records, with dead letters."""
