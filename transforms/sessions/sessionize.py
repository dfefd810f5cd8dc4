"""Sessionization: the one rule every mode applies, and the batch transform.

The rule (DESIGN.md): events of a session key, sorted by (event_time,
event_id), start a new session when the gap to the previous event is
>= gap, or when they lie >= max_duration after the session's first event.
``session_id`` is a hash of (session key, session start), so reruns and the
streaming path give the same ids.

``sessionize_key`` is that rule over all events of one key; modes differ only
in how they bring a key's events together (batch: hash buckets through one
shuffle; streaming: event-time windows and state), never in this function.

    events | Sessionize(gap_s=1800, max_duration_s=86400)
    -> DoOutputsTuple: [EVENTS_TAG] Events with session_id, [SESSIONS_TAG] SessionRows
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

import apache_beam as beam
from apache_beam import pvalue

from transforms.event_time import US_PER_SECOND
from transforms.parse import event_types
from transforms.records import (
  EVENTS_TAG,
  SESSIONS_TAG,
  Event,
  SessionRow,
  typed_outputs,
  with_session_id,
)
from transforms.sessions.bucketed_grouping import GroupIntoBuckets, bucket_records

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


def _sort_key(event: Event) -> tuple[int, str]:
  return event.event_time, event.event_id


def summarize_session(session_id: str, session_key: str, events: Sequence[Event]) -> SessionRow:
  """The sessions-table row of one session's time-ordered events."""
  first, last = events[0], events[-1]
  counts = {event_types.PRODUCT_VIEW: 0, event_types.ADD_TO_CART: 0, event_types.PURCHASE: 0}
  revenue = Decimal(0)
  currencies = set()
  user_id = None
  pages = []
  for event in events:
    if event.event_type in counts:
      counts[event.event_type] += 1
    if event.event_type == event_types.PURCHASE and event.price is not None:
      revenue += Decimal(event.price) * (event.quantity or 1)
      currencies.add(event.currency)
    if user_id is None and event.user_id:
      user_id = event.user_id
    if event.page_url:
      pages.append(event.page_url)
  if len(currencies) == 1:
    currency = currencies.pop()
    revenue_text = str(revenue)
  else:
    # Amounts in several currencies do not add up; the events table has them.
    currency = None
    revenue_text = None if currencies else '0'
  return SessionRow(
    session_id=session_id,
    session_key=session_key,
    user_id=user_id,
    session_start=first.event_time,
    session_end=last.event_time,
    duration_s=(last.event_time - first.event_time) / US_PER_SECOND,
    event_count=len(events),
    product_views=counts[event_types.PRODUCT_VIEW],
    add_to_carts=counts[event_types.ADD_TO_CART],
    purchases=counts[event_types.PURCHASE],
    revenue=revenue_text,
    currency=currency,
    landing_page=pages[0] if pages else None,
    exit_page=pages[-1] if pages else None,
    channel=first.channel,
    device_class=first.device_class,
    country=first.country,
    is_bounce=len(events) == 1,
    is_bot=any(event.is_bot for event in events),
  )


def sessionize_key(
  session_key: str, events: Iterable[Event], gap_us: int, max_duration_us: int
) -> Iterator[tuple[SessionRow, list[Event]]]:
  """Applies the rule to all events of one key: (session row, its events) pairs."""
  ordered = sorted(events, key=_sort_key)
  starts = session_start_indices([e.event_time for e in ordered], gap_us, max_duration_us)
  for n, begin in enumerate(starts):
    end = starts[n + 1] if n + 1 < len(starts) else len(ordered)
    session_id = make_session_id(session_key, ordered[begin].event_time)
    members = [with_session_id(event, session_id) for event in ordered[begin:end]]
    yield summarize_session(session_id, session_key, members), members


class _SessionizeBucket(beam.DoFn):
  """All events of one hash bucket: split by key, then apply the rule per key."""

  def __init__(self, gap_us: int, max_duration_us: int):
    self._gap_us = gap_us
    self._max_duration_us = max_duration_us

  def process(self, bucket):
    _, batches = bucket
    by_key: dict[str, list[Event]] = {}
    for event in bucket_records(batches, Event):
      by_key.setdefault(event.session_key, []).append(event)
    for key in sorted(by_key):
      for session, members in sessionize_key(key, by_key[key], self._gap_us, self._max_duration_us):
        yield pvalue.TaggedOutput(SESSIONS_TAG, session)
        yield from members


class Sessionize(beam.PTransform):
  """Batch sessionization of deduplicated Events (global window)."""

  def __init__(
    self,
    gap_s: float = DEFAULT_GAP_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    num_buckets: int = 16,
  ):
    super().__init__()
    if gap_s <= 0 or max_duration_s <= 0:
      raise ValueError(
        f'session gap and max duration must be positive, got {gap_s}, {max_duration_s}'
      )
    self._gap_us = round(gap_s * US_PER_SECOND)
    self._max_duration_us = round(max_duration_s * US_PER_SECOND)
    self._num_buckets = num_buckets

  def expand(self, events):
    outputs = (
      events
      | 'GroupBySessionKey' >> GroupIntoBuckets(lambda event: event.session_key, self._num_buckets)
      | 'ApplySessionRule'
      >> beam.ParDo(_SessionizeBucket(self._gap_us, self._max_duration_us))
      .with_output_types(Event)
      .with_outputs(SESSIONS_TAG, main=EVENTS_TAG)
    )
    return typed_outputs(outputs, **{SESSIONS_TAG: SessionRow})
