"""The streaming forms of deduplication and sessionization, in event time.

Same rule, other grouping: ``sessionize_key`` (sessionize.py) decides the
sessions here too; what differs is how a key's events are brought together.
A stateful DoFn per session key buffers events and waits until the
watermark shows that no on-time event can still join them:

    a buffered run of events is final once  watermark >= last event + gap + allowed lateness

An on-time event is then at least ``gap`` after the run's last event, so it
starts a new session in batch as well: the streaming sessions equal the
batch ones for every event that is not late. An event that would join a
session already emitted (its time is before the key's finalized boundary)
is late: it goes to the dead letters with reason ``late``, never silently.
Sessions are emitted once, when final, so a table never holds two versions
of one session; the price is latency (gap + allowed lateness after the last
event).

Deduplication keeps the first arrival of each event_id for ``dedup_ttl`` of
event time (state per id, expired by an event-time timer); later copies are
counted as duplicates.

Input elements must carry their event time as Beam timestamp (TimestampByEventTime).
"""

from __future__ import annotations

import apache_beam as beam
import orjson
from apache_beam import pvalue
from apache_beam.coders import BooleanCoder, VarIntCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
  BagStateSpec,
  ReadModifyWriteStateSpec,
  TimerSpec,
  on_timer,
)
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms import accounting
from transforms.event_time import US_PER_SECOND, format_us
from transforms.normalize import KNOWN_FIELDS
from transforms.record_coder import RecordCoder
from transforms.records import (
  DEAD_LETTER_TAG,
  EVENTS_TAG,
  SESSIONS_TAG,
  DeadLetter,
  Event,
  SessionRow,
  typed_outputs,
)
from transforms.sessionize import DEFAULT_GAP_S, DEFAULT_MAX_DURATION_S, sessionize_key

LATE = 'late'
STEP = 'sessionize_streaming'
DEFAULT_ALLOWED_LATENESS_S = 5 * 60
DEFAULT_DEDUP_TTL_S = 24 * 3600
# How long a key remembers its finalized boundary after its last session:
# events older than this (in event time) can no longer be recognised as late.
BOUNDARY_RETENTION_S = 7 * 24 * 3600


def _timestamp(time_us: int) -> Timestamp:
  return Timestamp(micros=time_us)


class TimestampByEventTime(beam.PTransform):
  """Events with their event_time as Beam element timestamp."""

  def expand(self, events):
    return events | 'EventTimeTimestamps' >> beam.Map(
      lambda e: TimestampedValue(e, e.event_time / US_PER_SECOND)
    ).with_output_types(Event)


class _KeepFirstArrival(accounting.CountingDoFn):
  SEEN = ReadModifyWriteStateSpec('seen', BooleanCoder())
  EXPIRE = TimerSpec('expire', TimeDomain.WATERMARK)

  def __init__(self, ttl_us: int):
    self._ttl_us = ttl_us

  def process(self, keyed, seen=beam.DoFn.StateParam(SEEN), expire=beam.DoFn.TimerParam(EXPIRE)):
    _, event = keyed
    if seen.read():
      self.count(accounting.DUPLICATE, event.source)
      return
    seen.write(True)
    expire.set(_timestamp(event.event_time + self._ttl_us))
    yield event

  @on_timer(EXPIRE)
  def forget(self, seen=beam.DoFn.StateParam(SEEN)):
    seen.clear()


class DeduplicateStreaming(beam.PTransform):
  """Streaming dedup by event_id: first arrival wins, state expires after ttl."""

  def __init__(self, ttl_s: float = DEFAULT_DEDUP_TTL_S):
    super().__init__()
    self._ttl_us = round(ttl_s * US_PER_SECOND)

  def expand(self, events):
    return (
      events
      | 'KeyByEventId' >> beam.Map(lambda e: (e.event_id, e)).with_output_types(tuple[str, Event])
      | 'KeepFirstArrival' >> beam.ParDo(_KeepFirstArrival(self._ttl_us)).with_output_types(Event)
    )


class _SessionizeKey(beam.DoFn):
  PENDING = BagStateSpec('pending', RecordCoder(Event))
  LAST_TIME = ReadModifyWriteStateSpec('last_time', VarIntCoder())  # newest pending event
  BOUNDARY = ReadModifyWriteStateSpec('boundary', VarIntCoder())  # earliest on-time event
  FINALIZE = TimerSpec('finalize', TimeDomain.WATERMARK)
  FORGET = TimerSpec('forget', TimeDomain.WATERMARK)

  def __init__(self, gap_us: int, max_duration_us: int, lateness_us: int, retention_us: int):
    self._gap_us = gap_us
    self._max_duration_us = max_duration_us
    self._lateness_us = lateness_us
    self._retention_us = retention_us

  def process(
    self,
    keyed,
    pending=beam.DoFn.StateParam(PENDING),
    last_time=beam.DoFn.StateParam(LAST_TIME),
    boundary=beam.DoFn.StateParam(BOUNDARY),
    finalize=beam.DoFn.TimerParam(FINALIZE),
  ):
    _, event = keyed
    edge = boundary.read()
    if edge is not None and event.event_time < edge:
      yield pvalue.TaggedOutput(DEAD_LETTER_TAG, late_dead_letter(event, edge))
      return
    pending.add(event)
    newest = max(last_time.read() or event.event_time, event.event_time)
    last_time.write(newest)
    finalize.set(_timestamp(newest + self._gap_us + self._lateness_us))

  @on_timer(FINALIZE)
  def emit_final_sessions(
    self,
    key=beam.DoFn.KeyParam,
    pending=beam.DoFn.StateParam(PENDING),
    last_time=beam.DoFn.StateParam(LAST_TIME),
    boundary=beam.DoFn.StateParam(BOUNDARY),
    forget=beam.DoFn.TimerParam(FORGET),
  ):
    events = list(pending.read())
    newest = last_time.read()
    pending.clear()
    last_time.clear()
    if not events:
      return
    # Any on-time event from now on lies at least a gap after `newest`.
    boundary.write(newest + self._gap_us)
    forget.set(_timestamp(newest + self._retention_us))
    # Outputs carry the timer's timestamp: the moment the sessions became final.
    for session, members in sessionize_key(key, events, self._gap_us, self._max_duration_us):
      yield pvalue.TaggedOutput(SESSIONS_TAG, session)
      yield from members

  @on_timer(FORGET)
  def forget_boundary(
    self, boundary=beam.DoFn.StateParam(BOUNDARY), last_time=beam.DoFn.StateParam(LAST_TIME)
  ):
    if last_time.read() is None:  # nothing pending: the key is idle
      boundary.clear()


# The canonical fields an Event still holds after enrichment (ip and user_agent
# are gone by then: raw PII never reaches a table, dead letters included).
_CANONICAL_FIELDS = tuple(name for name in KNOWN_FIELDS if name not in ('ip', 'user_agent'))


def late_payload(event: Event) -> bytes:
  """The late event as a canonical JSON line that parses back to the same event.

  The time is ISO-8601 text: an epoch number in microseconds would read back
  as milliseconds (a year past 50,000). Enrichment columns are not canonical
  fields; a replay derives what it can again.
  """
  fields = {}
  for name in _CANONICAL_FIELDS:
    value = getattr(event, name)
    if value is None:
      continue
    if name == 'event_time':
      value = format_us(value)
    elif name == 'properties':
      value = orjson.loads(value)
    fields[name] = value
  return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def late_dead_letter(event: Event, boundary_us: int) -> DeadLetter:
  """The late event as a canonical JSON line, replayable as events-jsonl."""
  return DeadLetter(
    payload=late_payload(event),
    reason=LATE,
    detail=f'event at {format_us(event.event_time)} belongs to a session already emitted '
    f'(on-time events of this key start at {format_us(boundary_us)})',
    step=STEP,
    source=event.source,
    position=event.event_id,
    event_time=event.event_time,
    input_time=event.event_time,
  )


class SessionizeStreaming(beam.PTransform):
  """Event-time sessionization with the batch rule; late events to dead letters.

  -> DoOutputsTuple: [EVENTS_TAG] Events with session_id, [SESSIONS_TAG]
  SessionRows, [DEAD_LETTER_TAG] late events.
  """

  def __init__(
    self,
    gap_s: float = DEFAULT_GAP_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    allowed_lateness_s: float = DEFAULT_ALLOWED_LATENESS_S,
    retention_s: float = BOUNDARY_RETENTION_S,
  ):
    super().__init__()
    if min(gap_s, max_duration_s) <= 0 or allowed_lateness_s < 0:
      raise ValueError('session gap and max duration must be positive, lateness not negative')
    self._args = tuple(
      round(x * US_PER_SECOND) for x in (gap_s, max_duration_s, allowed_lateness_s, retention_s)
    )

  def expand(self, events):
    outputs = (
      events
      | 'KeyBySessionKey'
      >> beam.Map(lambda e: (e.session_key, e)).with_output_types(tuple[str, Event])
      | 'SessionizeKey'
      >> beam.ParDo(_SessionizeKey(*self._args))
      .with_output_types(Event)
      .with_outputs(SESSIONS_TAG, DEAD_LETTER_TAG, main=EVENTS_TAG)
    )
    return typed_outputs(outputs, **{SESSIONS_TAG: SessionRow, DEAD_LETTER_TAG: DeadLetter})
