"""Enrichment: user agents, countries, marketing channels, pseudonyms and the product dimension."""
