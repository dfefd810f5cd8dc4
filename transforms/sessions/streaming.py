"""The streaming forms of deduplication and sessionization, in event time.

Same rule, other grouping: ``sessionize_key`` (sessionize.py) decides the
sessions here too; what differs is how a key's events are brought together.
A stateful DoFn per session key buffers events and waits until the
watermark shows that no on-time event can still join them:

    a buffered run of events is final once  watermark >= last event + gap + allowed lateness

where a run ends at the first gap between buffered events. Runs are
emitted one by one, earliest first: a key whose later sessions arrive
before the watermark has passed its earlier ones (a backlog read at once)
does not hold the earlier ones until it goes quiet. An on-time event is
then at least ``gap`` after the run's last event, so it
starts a new session in batch as well: the streaming sessions equal the
batch ones for every event that is not late. An event that would join a
session already emitted (its time is before the key's finalized boundary)
is late: it goes to the dead letters with reason ``late``, never silently.
Sessions are emitted once, when final, so a table never holds two versions
of one session; the price is latency (gap + allowed lateness after the last
event).

Deduplication keeps the copy of each event_id that batch keeps (the
smallest by deduplicate.keep_first), in two steps and with no timer in
between (a timer's output reaching the next stage before that stage's own
timers fire is a hold that not every runner keeps: the legacy DirectRunner
does not). Keyed by event_id for ``dedup_ttl`` of event time, the first copy
goes on at once and copies equal to it in every column (retries) are
dropped; a copy that differs is sent to the first copy's session key. There
the sessionizer buffers it beside the key's events and, when their sessions
are final, keeps the preferred copy of each id. A differing copy that comes
after its first copy's session was emitted is counted as a duplicate (it
came late: batch might have preferred it). A differing copy whose own
session key differs from the first copy's is sessionized under the first
one's key: only a corrupt export gives one event_id two visitors.

Input elements must carry their event time as Beam timestamp (TimestampByEventTime).
"""

from __future__ import annotations

import hashlib

import apache_beam as beam
import orjson
from apache_beam import pvalue
from apache_beam.coders import BytesCoder, StrUtf8Coder, VarIntCoder
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
from transforms.parse.normalize import KNOWN_FIELDS
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
from transforms.sessions.deduplicate import ROW_FIELDS, deduplicate
from transforms.sessions.sessionize import DEFAULT_GAP_S, DEFAULT_MAX_DURATION_S, sessionize_key

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


def row_digest(event: Event) -> bytes:
  """A digest of the event's row: copies equal in every column have the same."""
  return hashlib.blake2b(repr(event[:ROW_FIELDS]).encode(), digest_size=16).digest()


class _RouteCopies(accounting.CountingDoFn):
  FIRST_KEY = ReadModifyWriteStateSpec('first_key', StrUtf8Coder())
  FIRST_ROW = ReadModifyWriteStateSpec('first_row', BytesCoder())
  EXPIRE = TimerSpec('expire', TimeDomain.WATERMARK)

  def __init__(self, ttl_us: int):
    self._ttl_us = ttl_us

  def process(
    self,
    keyed,
    first_key=beam.DoFn.StateParam(FIRST_KEY),
    first_row=beam.DoFn.StateParam(FIRST_ROW),
    expire=beam.DoFn.TimerParam(EXPIRE),
  ):
    _, event = keyed
    key = first_key.read()
    if key is None:
      first_key.write(event.session_key)
      first_row.write(row_digest(event))
      expire.set(_timestamp(event.event_time + self._ttl_us))
      yield event.session_key, (False, event)
    elif row_digest(event) == first_row.read():
      self.count(accounting.DUPLICATE, event.source)
    else:
      # A copy that differs: to the first copy's key, where they are weighed.
      yield key, (True, event)

  @on_timer(EXPIRE)
  def forget(
    self, first_key=beam.DoFn.StateParam(FIRST_KEY), first_row=beam.DoFn.StateParam(FIRST_ROW)
  ):
    first_key.clear()
    first_row.clear()


class DeduplicateStreaming(beam.PTransform):
  """Events -> (session key, (is a differing copy, event)) for SessionizeStreaming.

  Per event_id, for ``ttl_s`` of event time: the first copy goes to its
  session key; copies equal to it in every column are duplicates, dropped
  here (retries: the common case); a copy that differs goes to the first
  copy's key, where the sessionizer keeps the one batch keeps.
  """

  def __init__(self, ttl_s: float = DEFAULT_DEDUP_TTL_S):
    super().__init__()
    self._ttl_us = round(ttl_s * US_PER_SECOND)

  def expand(self, events):
    return (
      events
      | 'KeyByEventId' >> beam.Map(lambda e: (e.event_id, e)).with_output_types(tuple[str, Event])
      | 'RouteCopies'
      >> beam.ParDo(_RouteCopies(self._ttl_us)).with_output_types(tuple[str, tuple[bool, Event]])
    )


class _SessionizeKey(accounting.CountingDoFn):
  PENDING = BagStateSpec('pending', RecordCoder(Event))
  COPIES = BagStateSpec('copies', RecordCoder(Event))  # differing copies of other events
  LAST_TIME = ReadModifyWriteStateSpec('last_time', VarIntCoder())  # newest pending event
  FINALIZE_AT = ReadModifyWriteStateSpec('finalize_at', VarIntCoder())  # the timer, as set
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
    copies=beam.DoFn.StateParam(COPIES),
    last_time=beam.DoFn.StateParam(LAST_TIME),
    boundary=beam.DoFn.StateParam(BOUNDARY),
    finalize_at=beam.DoFn.StateParam(FINALIZE_AT),
    finalize=beam.DoFn.TimerParam(FINALIZE),
  ):
    _, (is_copy, event) = keyed
    edge = boundary.read()
    if edge is not None and event.event_time < edge:
      if is_copy:  # its first copy is in a session emitted already
        self.count(accounting.DUPLICATE, event.source)
      else:
        yield pvalue.TaggedOutput(DEAD_LETTER_TAG, late_dead_letter(event, edge))
      return
    (copies if is_copy else pending).add(event)
    last_time.write(max(last_time.read() or event.event_time, event.event_time))
    # The earliest run can be final no sooner than its earliest event allows;
    # the timer re-arms at the run's real end if it fires before.
    earliest_final = event.event_time + self._gap_us + self._lateness_us
    current = finalize_at.read()
    if current is None or earliest_final < current:
      finalize_at.write(earliest_final)
      finalize.set(_timestamp(earliest_final))

  @on_timer(FINALIZE)
  def emit_final_sessions(
    self,
    key=beam.DoFn.KeyParam,
    fired=beam.DoFn.TimestampParam,
    pending=beam.DoFn.StateParam(PENDING),
    copies=beam.DoFn.StateParam(COPIES),
    last_time=beam.DoFn.StateParam(LAST_TIME),
    boundary=beam.DoFn.StateParam(BOUNDARY),
    finalize_at=beam.DoFn.StateParam(FINALIZE_AT),
    finalize=beam.DoFn.TimerParam(FINALIZE),
    forget=beam.DoFn.TimerParam(FORGET),
  ):
    events = self._weigh_copies(list(pending.read()), list(copies.read()))
    pending.clear()
    copies.clear()
    finalize_at.clear()
    if not events:
      last_time.clear()
      return
    events.sort(key=lambda e: e.event_time)
    times = [e.event_time for e in events]
    done = final_run_length(times, self._gap_us, fired.micros - self._lateness_us)
    final, still_open = events[:done], events[done:]
    if still_open:
      for event in still_open:
        pending.add(event)
      last_time.write(times[-1])
      first_open_end = next(end for end in run_ends(times, self._gap_us) if end > done)
      next_final = times[first_open_end - 1] + self._gap_us + self._lateness_us
      finalize_at.write(next_final)
      finalize.set(_timestamp(next_final))
    else:
      last_time.clear()
    if not final:
      return
    newest = final[-1].event_time
    # Any on-time event from now on lies at least a gap after `newest`.
    boundary.write(newest + self._gap_us)
    forget.set(_timestamp(newest + self._retention_us))
    # Outputs carry the timer's timestamp: the moment the sessions became final.
    for session, members in sessionize_key(key, final, self._gap_us, self._max_duration_us):
      yield pvalue.TaggedOutput(SESSIONS_TAG, session)
      yield from members

  def _weigh_copies(self, events: list[Event], differing: list[Event]) -> list[Event]:
    """The pending events with every id once: the copy batch keeps (keep_first)."""
    if not differing:
      return events
    pending_ids = {e.event_id for e in events}
    for copy in differing:
      if copy.event_id in pending_ids:
        events.append(copy)
      else:  # its first copy went out with an earlier session
        self.count(accounting.DUPLICATE, copy.source)
    kept = []
    for first, dropped in deduplicate(events):
      kept.append(first)
      for copy in dropped:
        self.count(accounting.DUPLICATE, copy.source)
    return kept

  @on_timer(FORGET)
  def forget_boundary(
    self, boundary=beam.DoFn.StateParam(BOUNDARY), last_time=beam.DoFn.StateParam(LAST_TIME)
  ):
    if last_time.read() is None:  # nothing pending: the key is idle
      boundary.clear()


def run_ends(times: list[int], gap_us: int) -> list[int]:
  """Where each run of the ascending ``times`` ends (exclusive indices): a run ends
  at a gap of at least ``gap_us``, the batch rule, or at the last time."""
  return [
    i + 1 for i in range(len(times)) if i + 1 == len(times) or times[i + 1] - times[i] >= gap_us
  ]


def final_run_length(times: list[int], gap_us: int, final_before_us: int) -> int:
  """How many of the ascending ``times`` lie in runs that are final, a run being
  final once its last time + gap is at most ``final_before_us``. A run ended by a
  later one is final by the same bound, so the final runs are a prefix."""
  final = [end for end in run_ends(times, gap_us) if times[end - 1] + gap_us <= final_before_us]
  return final[-1] if final else 0


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

  Takes DeduplicateStreaming's output: events by session key, with the
  differing copies of an id beside its first copy, weighed when the session
  is final. -> DoOutputsTuple: [EVENTS_TAG] Events with session_id, [SESSIONS_TAG]
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

  def expand(self, routed):
    outputs = routed | 'SessionizeKey' >> beam.ParDo(_SessionizeKey(*self._args)).with_output_types(
      Event
    ).with_outputs(SESSIONS_TAG, DEAD_LETTER_TAG, main=EVENTS_TAG)
    return typed_outputs(outputs, **{SESSIONS_TAG: SessionRow, DEAD_LETTER_TAG: DeadLetter})
