"""The event chain: the steps every event goes through, in one order, in every mode.

    parsed events -> Enrich -> JoinProducts -> (the mode's own step) -> Deduplicate -> Sessionize

Batch, replay and streaming assemble it with these two functions, so the order
and the step names are one thing:

    events = enriched(parsed, EnrichEvents(pseudonymizer, site_host), join)
    # batch: the day window's context; replay: the stored events joined in;
    # streaming: each event's timestamp set to its event time
    rows = sessionized(events, DeduplicateEvents(...), Sessionize(...))

The steps are applied in the caller's scope, not wrapped in a composite: a
streaming job's stateful steps keep the names Deduplicate and Sessionize (a
runner maps their state by name), and the batch and streaming graphs name the
same step the same way. What differs by mode is which transform does a step:
batch and replay deduplicate and sessionize whole buckets (DeduplicateEvents,
Sessionize), streaming per key in event time (DeduplicateStreaming,
SessionizeStreaming), which calls the same batch functions on each key's
buffered events.
"""

from __future__ import annotations

from typing import Optional

import apache_beam as beam

ENRICH, JOIN_PRODUCTS, DEDUPLICATE, SESSIONIZE = (
  'Enrich',
  'JoinProducts',
  'Deduplicate',
  'Sessionize',
)
STEPS = (ENRICH, JOIN_PRODUCTS, DEDUPLICATE, SESSIONIZE)


def enriched(events, enrich: beam.PTransform, join: Optional[beam.PTransform]):
  """The chain's first half: parsed events enriched, then joined with the product
  dimension (``join`` None: there is no dimension to join)."""
  events = events | ENRICH >> enrich
  return events if join is None else events | JOIN_PRODUCTS >> join


def sessionized(events, deduplicate: beam.PTransform, sessionize: beam.PTransform):
  """The chain's second half: enriched events (one PCollection or a tuple of them)
  deduplicated, then sessionized; the sessionize step's outputs."""
  return events | DEDUPLICATE >> deduplicate | SESSIONIZE >> sessionize
