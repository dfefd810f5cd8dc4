"""DeduplicateEvents: one event per event_id.

Of events sharing an event_id, the earliest by (event_time, the rest of the
row) is kept: a total order over what a table shows, so the choice depends
neither on input order nor on where a copy was read (a file in batch, a
stream in streaming: the streaming dedup applies the same rule, see
streaming.py). Copies equal in every column, the common case (retries,
overlapping exports), give the same row whichever is kept. Every dropped
copy is counted as a duplicate of its source.

    events | DeduplicateEvents()
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam

from transforms import accounting
from transforms.records import EVENT_COLUMNS, Event
from transforms.sessions.bucketed_grouping import GroupIntoBuckets, bucket_records

ROW_FIELDS = len(EVENT_COLUMNS)  # the row: what the preference weighs


def _preference(event: Event) -> tuple:
  # repr gives a total order over rows whose fields may be None.
  return event.event_time, repr(event[:ROW_FIELDS])


def keep_first(copies: list[Event]) -> Event:
  """The copy of an event that deduplication keeps."""
  return copies[0] if len(copies) == 1 else min(copies, key=_preference)


def deduplicate(events: Iterable[Event]) -> Iterator[tuple[Event, list[Event]]]:
  """(kept event, dropped copies) for every distinct event_id, in first-seen order."""
  by_id: dict[str, list[Event]] = {}
  for event in events:
    copies = by_id.get(event.event_id)
    if copies is None:
      by_id[event.event_id] = [event]
    else:
      copies.append(event)
  for copies in by_id.values():
    kept = keep_first(copies)
    yield kept, [copy for copy in copies if copy is not kept]


class _DeduplicateBucket(accounting.CountingDoFn):
  def process(self, bucket):
    _, batches = bucket
    for kept, dropped in deduplicate(bucket_records(batches, Event)):
      for copy in dropped:
        self.count(accounting.DUPLICATE, copy.source)
      yield kept


class DeduplicateEvents(beam.PTransform):
  """Batch dedup by event_id (global window)."""

  def __init__(self, num_buckets: int = 16):
    super().__init__()
    self._num_buckets = num_buckets

  def expand(self, events):
    return (
      events
      | 'GroupByEventId' >> GroupIntoBuckets(lambda event: event.event_id, self._num_buckets)
      | 'KeepOnePerId' >> beam.ParDo(_DeduplicateBucket()).with_output_types(Event)
    )
