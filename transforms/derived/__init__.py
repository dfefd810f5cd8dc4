"""Derived tables: recommender inputs and retention features, from the written tables."""
