"""Sessionization: the one rule every mode applies, and the batch transform.

The rule (docs/design.md): events of a session key, sorted by (event_time,
event_id), start a new session when the gap to the previous event is
>= gap, or when they lie >= max_duration after the session's first event.
``session_id`` is a hash of (session key, session start), so reruns and the
streaming path give the same ids.

``sessionize_table`` is that rule over a table of many keys' events, column
by column; ``sessionize_key`` is the same function on the events of one key,
as records. Modes differ only in how they bring a key's events together
(batch: hash buckets through one shuffle; streaming: event-time windows and
state), never in the rule.

    events | Sessionize(gap_s=1800, max_duration_s=86400)
    -> DoOutputsTuple: [EVENTS_TAG] tables of Events with session_id,
                       [SESSIONS_TAG] tables of SessionRows
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue

from transforms.event_batches import as_numpy, from_batch, python_values, schema_of, to_batch
from transforms.event_time import US_PER_SECOND
from transforms.parse import event_types
from transforms.pooled_dofn import PooledDoFn
from transforms.records import (
  EVENTS_TAG,
  SESSIONS_TAG,
  Event,
  SessionRow,
  typed_outputs,
)
from transforms.sessions.bucketed_grouping import GroupIntoBuckets, bucket_table

DEFAULT_GAP_S = 30 * 60
DEFAULT_MAX_DURATION_S = 24 * 3600


def session_start_indices(times: Sequence[int], gap_us: int, max_duration_us: int) -> list[int]:
  """Indices in ascending ``times`` where a new session starts (always 0 first)."""
  if not times:
    return []
  starts = [0]
  session_start = previous = times[0]
  for i in range(1, len(times)):
    t = times[i]
    if t - previous >= gap_us or t - session_start >= max_duration_us:
      starts.append(i)
      session_start = t
    previous = t
  return starts


def make_session_id(session_key: str, session_start_us: int) -> str:
  return (
    's-'
    + hashlib.blake2b(f'{session_key}\x1f{session_start_us}'.encode(), digest_size=16).hexdigest()
  )


def sessionize_table(
  events: pa.Table, gap_us: int, max_duration_us: int
) -> tuple[pa.Table, pa.Table]:
  """Applies the rule to every key of a table of Events at once.

  Returns (the events with session_id, sorted by key, time and id; the
  sessions table's rows), both in ``event_batches.schema_of`` their record
  types. Cuts at key changes and gaps are found for all rows together; only
  runs longer than ``max_duration_us`` (crawlers) walk the rule event by event.
  """
  if events.num_rows == 0:
    return events, schema_of(SessionRow).empty_table()
  table = events.append_column(
    '_key', pc.coalesce(events['anonymous_id'], events['user_id'])
  ).combine_chunks()
  table = table.take(
    pc.sort_indices(
      table, [('_key', 'ascending'), ('event_time', 'ascending'), ('event_id', 'ascending')]
    )
  )
  n = table.num_rows
  key = table['_key']
  times = as_numpy(table['event_time'])
  starts = np.ones(n, dtype=bool)
  if n > 1:
    starts[1:] = as_numpy(pc.not_equal(key[1:], key[:-1])) | (np.diff(times) >= gap_us)
  _cut_long_runs(starts, times, gap_us, max_duration_us)
  first = np.flatnonzero(starts)
  last = np.append(first[1:], n) - 1
  session_of_row = np.cumsum(starts) - 1

  session_keys = python_values(key.take(pa.array(first)))
  session_start = times[first]
  session_ids = [
    make_session_id(k, int(t)) for k, t in zip(session_keys, session_start, strict=True)
  ]
  event_type = table['event_type']

  def count_of(kind: pa.Scalar) -> np.ndarray:
    return np.add.reduceat(as_numpy(pc.equal(event_type, kind)).astype(np.int64), first)

  def at_first(name: str):
    return table[name].take(pa.array(first))

  revenue, currency = _revenue(table, session_of_row, len(first))
  event_count = last - first + 1
  sessions = pa.Table.from_arrays(
    [
      pa.array(session_ids, pa.string()),
      pa.array(session_keys, pa.string()),
      _first_present(table['user_id'], first, last),
      pa.array(session_start),
      pa.array(times[last]),
      pa.array((times[last] - session_start) / US_PER_SECOND),
      pa.array(event_count),
      pa.array(count_of(_PRODUCT_VIEW)),
      pa.array(count_of(_ADD_TO_CART)),
      pa.array(count_of(_PURCHASE)),
      pa.array(revenue, pa.string()),
      pa.array(currency, pa.string()),
      _first_present(table['page_url'], first, last),
      _first_present(table['page_url'], first, last, from_end=True),
      at_first('channel'),
      at_first('device_class'),
      at_first('country'),
      pa.array(event_count == 1),
      pa.array(np.maximum.reduceat(as_numpy(pc.fill_null(table['is_bot'], _FALSE)), first)),
    ],
    schema=schema_of(SessionRow),
  )
  with_ids = table.drop_columns(['_key']).set_column(
    _SESSION_ID_COLUMN,
    'session_id',
    pa.array(session_ids, pa.string()).take(pa.array(session_of_row)),
  )
  return with_ids, sessions


_SESSION_ID_COLUMN = Event._fields.index('session_id')
# Arrow scalars, not Python values: see event_batches.as_numpy on what those cost.
_FALSE, _ZERO = pa.scalar(False), pa.scalar(0, pa.int32())
_PRODUCT_VIEW, _ADD_TO_CART, _PURCHASE = (
  pa.scalar(kind)
  for kind in (event_types.PRODUCT_VIEW, event_types.ADD_TO_CART, event_types.PURCHASE)
)


def _cut_long_runs(starts: np.ndarray, times: np.ndarray, gap_us: int, max_duration_us: int):
  """Adds the max-duration cuts to ``starts`` (the cuts at key changes and gaps), in place."""
  first = np.flatnonzero(starts)
  last = np.append(first[1:], len(starts)) - 1
  for run in np.flatnonzero(times[last] - times[first] >= max_duration_us):
    begin, end = first[run], last[run] + 1
    cuts = session_start_indices(times[begin:end].tolist(), gap_us, max_duration_us)
    starts[begin + np.asarray(cuts[1:], dtype=np.int64)] = True


def _first_present(column, first: np.ndarray, last: np.ndarray, from_end: bool = False):
  """Per session, the first (or last) non-empty value of a text column, else null."""
  present = np.flatnonzero(
    as_numpy(pc.fill_null(pc.greater(pc.binary_length(column), _ZERO), _FALSE))
  )
  if not present.size:
    return pa.nulls(len(first), column.type)
  if from_end:
    position = np.searchsorted(present, last, side='right') - 1
    rows = present[np.maximum(position, 0)]
    found = (position >= 0) & (rows >= first)
  else:
    position = np.searchsorted(present, first)
    rows = present[np.minimum(position, present.size - 1)]
    found = (position < present.size) & (rows <= last)
  return column.take(pa.array(np.where(found, rows, 0), mask=~found))


def _revenue(table: pa.Table, session_of_row: np.ndarray, sessions: int):
  """(revenue, currency) per session: the purchases' price x quantity, in Decimal.

  Purchases are few, so this walks them in Python with Decimal, exactly.
  Amounts in several currencies do not add up; the events table has them.
  """
  revenue: list = ['0'] * sessions
  currency: list = [None] * sessions
  priced = pc.and_(pc.equal(table['event_type'], _PURCHASE), pc.is_valid(table['price']))
  rows = np.flatnonzero(as_numpy(pc.fill_null(priced, _FALSE)))
  if not rows.size:
    return revenue, currency
  indices = pa.array(rows)
  totals: dict[int, Decimal] = {}
  currencies: dict[int, set] = {}
  for session, price, quantity, code in zip(
    session_of_row[rows].tolist(),
    python_values(table['price'].take(indices)),
    table['quantity'].take(indices).to_pylist(),
    python_values(table['currency'].take(indices)),
    strict=True,
  ):
    totals[session] = totals.get(session, Decimal(0)) + Decimal(price) * (quantity or 1)
    currencies.setdefault(session, set()).add(code)
  for session, codes in currencies.items():
    if len(codes) == 1:
      revenue[session], currency[session] = str(totals[session]), codes.pop()
    else:
      revenue[session] = None
  return revenue, currency


def sessionize_key(
  session_key: str, events: Iterable[Event], gap_us: int, max_duration_us: int
) -> Iterator[tuple[SessionRow, list[Event]]]:
  """Applies the rule to all events of one key: (session row, its events) pairs.

  The row form of sessionize_table, for modes that hold one key's events
  (streaming): the same function decides, so the modes cannot drift apart.
  """
  events = list(events)
  if not events:
    return
  with_ids, sessions = sessionize_table(
    pa.Table.from_batches([to_batch(Event, events)]), gap_us, max_duration_us
  )
  members = from_batch(Event, with_ids)
  begin = 0
  for session in from_batch(SessionRow, sessions):
    if session.session_key != session_key:
      raise ValueError(f'event of key {session.session_key!r} among those of {session_key!r}')
    end = begin + session.event_count
    yield session, members[begin:end]
    begin = end


class _SessionizeBucket(PooledDoFn):
  """All events of one hash bucket, every key at once: sessionize_table."""

  def __init__(self, gap_us: int, max_duration_us: int, threads: int = 1):
    super().__init__(threads)
    self._gap_us = gap_us
    self._max_duration_us = max_duration_us

  def work(self, bucket) -> tuple[pa.Table, pa.Table]:
    _, batches = bucket
    return sessionize_table(bucket_table(batches, Event), self._gap_us, self._max_duration_us)

  def emit(self, result) -> Iterator:
    events, sessions = result
    yield pvalue.TaggedOutput(SESSIONS_TAG, sessions)
    yield events


def session_keys(events: pa.Table):
  return pc.coalesce(events['anonymous_id'], events['user_id'])


def session_key_of(event: Event) -> str:
  return event.session_key


class Sessionize(beam.PTransform):
  """Batch sessionization of deduplicated Events, or tables of them (global window).

  Outputs tables (event_batches): events with session_id, and sessions rows.
  ``threads``: buckets sessionized at once in a worker (pooled_dofn.py).
  """

  def __init__(
    self,
    gap_s: float = DEFAULT_GAP_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    num_buckets: int = 16,
    threads: int = 1,
  ):
    super().__init__()
    if gap_s <= 0 or max_duration_s <= 0:
      raise ValueError(
        f'session gap and max duration must be positive, got {gap_s}, {max_duration_s}'
      )
    self._gap_us = round(gap_s * US_PER_SECOND)
    self._max_duration_us = round(max_duration_s * US_PER_SECOND)
    self._num_buckets = num_buckets
    self._threads = threads

  def expand(self, events):
    outputs = (
      events
      | 'GroupBySessionKey'
      >> GroupIntoBuckets(session_key_of, self._num_buckets, Event, session_keys)
      | 'ApplySessionRule'
      >> beam.ParDo(_SessionizeBucket(self._gap_us, self._max_duration_us, self._threads))
      .with_output_types(pa.Table)
      .with_outputs(SESSIONS_TAG, main=EVENTS_TAG)
    )
    return typed_outputs(outputs, **{SESSIONS_TAG: pa.Table})
