"""DeduplicateEvents: one event per event_id.

Of events sharing an event_id, the earliest by (event_time, the rest of the
row) is kept: a total order over what a table shows, so the choice depends
neither on input order nor on where a copy was read (a file in batch, a
stream in streaming: the streaming dedup applies the same rule, see
streaming.py). Copies equal in every column, the common case (retries,
overlapping exports), give the same row whichever is kept. Every dropped
copy is counted as a duplicate of its source.

    events | DeduplicateEvents()   -> tables of Events (event_batches)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms import accounting
from transforms.event_batches import as_numpy, from_batch, to_batch
from transforms.pooled_dofn import PooledDoFn
from transforms.records import EVENT_COLUMNS, Event
from transforms.sessions.bucketed_grouping import GroupIntoBuckets, bucket_table

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


def deduplicate_table(events: pa.Table) -> tuple[pa.Table, list[str]]:
  """(one row per event_id, the sources of the dropped copies) for a table of Events.

  Copies are rare, and mostly equal in every column (retries, overlapping
  exports): an id whose copies are all equal keeps its first copy as columns,
  which is what keep_first would choose. Only the ids whose copies differ go
  through keep_first as records (measured at 1M events: 32k copies as
  records were most of the step's time).
  """
  counts = events.group_by('event_id').aggregate([('event_id', 'count')])
  repeated = counts.filter(pc.greater(counts['event_id_count'], 1))['event_id']
  if not len(repeated):
    return events, []
  is_copy = pc.is_in(events['event_id'], value_set=repeated.combine_chunks())
  copies = events.filter(is_copy)
  # Grouped by id, each id's copies in table order (Arrow's sort is stable).
  copies = copies.take(pc.sort_indices(copies['event_id']))
  first, uniform = _first_copies_of_uniform_ids(copies)
  differing = ~uniform
  kept = [copies.filter(pa.array(first & uniform))]
  dropped = copies.filter(pa.array(uniform & ~first))['source'].to_pylist()
  if differing.any():
    records = []
    for chosen, others in deduplicate(from_batch(Event, copies.filter(pa.array(differing)))):
      records.append(chosen)
      dropped.extend(copy.source for copy in others)
    kept.append(pa.Table.from_batches([to_batch(Event, records)]))
  singles = events.filter(pc.invert(is_copy))
  return pa.concat_tables([singles, *kept]), dropped


def _first_copies_of_uniform_ids(copies: pa.Table) -> tuple[np.ndarray, np.ndarray]:
  """For a table grouped by event_id: (whether a row is its id's first, whether every
  copy of its id is equal in every row column). Nulls equal nulls; a NaN makes its
  id differ, which only sends it to keep_first."""
  rows = copies.num_rows
  ids = copies['event_id'].combine_chunks()
  first = np.ones(rows, bool)
  same = np.ones(rows, bool)  # equal to the row before, in every row column
  if rows > 1:
    first[1:] = ~as_numpy(pc.fill_null(pc.equal(ids[1:], ids[:-1]), False))
    for name in EVENT_COLUMNS:
      column = copies[name].combine_chunks()
      after, before = column[1:], column[:-1]
      equal = as_numpy(pc.fill_null(pc.equal(after, before), False))
      both_null = as_numpy(pc.and_(after.is_null(), before.is_null()))
      same[1:] &= equal | both_null
  group = np.cumsum(first) - 1
  uniform = np.ones(group[-1] + 1 if rows else 0, bool)
  uniform[group[~same & ~first]] = False
  return first, uniform[group]


class _DeduplicateBucket(PooledDoFn):
  def work(self, bucket) -> tuple[pa.Table, list[str]]:
    _, batches = bucket
    return deduplicate_table(bucket_table(batches, Event))

  def emit(self, result) -> Iterator[pa.Table]:
    kept, dropped = result
    for source in dropped:
      self.count(accounting.DUPLICATE, source)
    yield kept


def event_ids(table: pa.Table):
  return table['event_id']


class DeduplicateEvents(beam.PTransform):
  """Batch dedup by event_id (global window): Events (or tables of them) to tables of Events.

  ``threads``: buckets deduplicated at once in a worker (pooled_dofn.py)."""

  def __init__(self, num_buckets: int = 16, threads: int = 1):
    super().__init__()
    self._num_buckets = num_buckets
    self._threads = threads

  def expand(self, events):
    return (
      events
      | 'GroupByEventId' >> GroupIntoBuckets(event_id_of, self._num_buckets, Event, event_ids)
      | 'KeepOnePerId' >> beam.ParDo(_DeduplicateBucket(self._threads)).with_output_types(pa.Table)
    )


def event_id_of(event: Event) -> str:
  return event.event_id
