"""Streaming dedup and sessionization under TestStream, proven equal to batch.

The parity fixture: events of many visitors, arriving shuffled within a
bounded delay (so some arrive after later events of their key), with
duplicates, sessions across the gap and the 24 h cap. Batch (FnApiRunner) and
streaming (TestStream with watermark advances, legacy DirectRunner) must give
the same events with the same session_ids and the same session rows.
"""

from __future__ import annotations

import random

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from tests.conftest import NOW_US, beam_pipeline
from tests.transforms.helpers import table_rows
from transforms.parse.parse_events import EventLineParser, ParseEventsJsonl
from transforms.records import (
  DEAD_LETTER_TAG,
  EVENTS_TAG,
  SESSIONS_TAG,
  Event,
  RawRecord,
  SessionRow,
)
from transforms.sessions.deduplicate import DeduplicateEvents, deduplicate
from transforms.sessions.sessionize import Sessionize
from transforms.sessions.streaming import (
  DeduplicateStreaming,
  SessionizeStreaming,
  TimestampByEventTime,
  final_run_length,
)

SOURCE = 'test-stream'
T0 = 1_772_359_200  # 2026-03-01T10:00:00Z, seconds
MAX_DELAY_S = 180  # arrival is at most 3 minutes after the event
LATENESS_S = 300


def parity_lines(seed: int = 5) -> list[tuple[float, bytes]]:
  """(arrival time, JSON line) pairs: shuffled within MAX_DELAY_S, with duplicates."""
  rng = random.Random(seed)
  arrivals = []
  n = 0
  for visitor in range(15):
    # Millisecond times: Beam's watermarks and timers have millisecond precision.
    t = T0 + round(rng.uniform(0, 3600), 3)
    for _ in range(rng.randint(1, 25)):
      t += rng.choice((20, 60, 300, 1799, 1800, 2400))  # gaps around the 30 min rule
      n += 1
      line = orjson.dumps(
        {
          'event_id': f'e{n}',
          'event_type': 'page_view',
          'event_time': t,
          'anonymous_id': f'v{visitor}',
        }
      )
      arrivals.append((round(t + rng.uniform(0, MAX_DELAY_S), 3), line))
      if rng.random() < 0.1:  # a retry
        arrivals.append((round(t + rng.uniform(0, MAX_DELAY_S), 3), line))
  # A crawler for 25 hours, every 15 minutes: the 24 h cap must cut it the same way.
  for k in range(101):
    t = T0 + k * 900
    arrivals.append(
      (
        round(t + rng.uniform(0, MAX_DELAY_S), 3),
        orjson.dumps(
          {'event_id': f'bot{k}', 'event_type': 'page_view', 'event_time': t, 'anonymous_id': 'bot'}
        ),
      )
    )
  return sorted(arrivals)


def streaming_pipeline() -> BeamTestPipeline:
  options = PipelineOptions([])
  options.view_as(StandardOptions).streaming = True
  return BeamTestPipeline(runner='DirectRunner', options=options)


def build_test_stream(arrivals: list[tuple[float, bytes]]) -> BeamTestStream:
  """Arrivals in order, the watermark trailing them by MAX_DELAY_S.

  Elements between two watermark advances go in one batch: the test runner
  spends a round per TestStream event.
  """
  stream = BeamTestStream()
  watermark, batch = 0.0, []
  for n, (arrival, line) in enumerate(arrivals, 1):
    if arrival - MAX_DELAY_S > watermark + 300 and batch:
      stream.add_elements(batch)
      watermark = round(arrival - MAX_DELAY_S, 3)
      stream.advance_watermark_to(Timestamp(micros=round(watermark * 1000) * 1000))
      batch = []
    batch.append(TimestampedValue(RawRecord(SOURCE, n, line, 0), arrival))
  stream.add_elements(batch)
  return stream.advance_watermark_to(
    Timestamp(settled(arrivals[-1][0]))
  ).advance_watermark_to_infinity()


def settled(last_arrival_s: float) -> int:
  # A finite watermark past every timer: what the test runner emits on the
  # jump to infinity itself reaches assert_that too late to be seen.
  return int(last_arrival_s) + 1800 + LATENESS_S + 3600


class StreamSessions(beam.PTransform):
  """The streaming pipeline's event-time steps, as streaming_pipeline.py chains them."""

  def expand(self, events):
    return (
      events
      | TimestampByEventTime()
      | DeduplicateStreaming()
      | SessionizeStreaming(allowed_lateness_s=LATENESS_S)
    )


def session_view(outputs):
  events = outputs[EVENTS_TAG] | 'EventIds' >> beam.Map(lambda e: (e.event_id, e.session_id))
  sessions = outputs[SESSIONS_TAG] | 'SessionRows' >> beam.Map(tuple)
  return events, sessions


def test_batch_pipeline_gives_the_reference_rows():
  arrivals = parity_lines()
  reference = reference_rows(arrivals)
  with beam_pipeline() as p:
    records = p | beam.Create(
      [RawRecord(SOURCE, n, line, 0) for n, (_, line) in enumerate(arrivals, 1)]
    )
    events = (records | ParseEventsJsonl('EUR', NOW_US))[EVENTS_TAG]
    outputs = events | DeduplicateEvents(num_buckets=4) | Sessionize(num_buckets=4)
    events_view, sessions_view = session_view(
      {
        EVENTS_TAG: outputs[EVENTS_TAG] | 'EventRows' >> table_rows(Event),
        SESSIONS_TAG: outputs[SESSIONS_TAG] | 'SessionRowsOf' >> table_rows(SessionRow),
      }
    )
    assert_that(events_view, equal_to(reference['events']), label='events')
    assert_that(sessions_view, equal_to(reference['sessions']), label='sessions')


def test_streaming_sessions_equal_batch_sessions():
  arrivals = parity_lines()
  reference = reference_rows(arrivals)
  out_of_order = sum(
    1
    for (_, a), (_, b) in zip(arrivals, arrivals[1:], strict=False)
    if orjson.loads(a)['event_time'] > orjson.loads(b)['event_time']
  )
  assert out_of_order > 20 and len(reference['events']) < len(arrivals)  # shuffled, duplicated
  with streaming_pipeline() as p:
    records = p | build_test_stream(arrivals)
    events = (records | ParseEventsJsonl('EUR', NOW_US)).events
    outputs = events | StreamSessions()
    events_view, sessions_view = session_view(outputs)
    assert_that(events_view, equal_to(reference['events']), label='events')
    assert_that(sessions_view, equal_to(reference['sessions']), label='sessions')
    assert_that(outputs[DEAD_LETTER_TAG], equal_to([]), label='nothing late')


def reference_rows(arrivals):
  """The rows both pipelines must give, from the pure functions both apply."""
  from transforms.dead_letters import RecordError, RecordFiltered
  from transforms.parse.parse_events import EventLineParser
  from transforms.sessions.sessionize import sessionize_key

  parse = EventLineParser('EUR', NOW_US)
  events = []
  for n, (_, line) in enumerate(arrivals, 1):
    try:
      events.append(parse(RawRecord(SOURCE, n, line, 0)))
    except (RecordError, RecordFiltered):
      pass
  unique = [kept for kept, _ in deduplicate(events)]
  by_key = {}
  for event in unique:
    by_key.setdefault(event.session_key, []).append(event)
  event_rows, session_rows = [], []
  for key, members in by_key.items():
    for session, session_events in sessionize_key(key, members, 1800 * 10**6, 86400 * 10**6):
      session_rows.append(tuple(session))
      event_rows.extend((e.event_id, e.session_id) for e in session_events)
  return {'events': sorted(event_rows), 'sessions': sorted(session_rows)}


def visitor_line(event_id: str, t: float) -> bytes:
  """A page view of visitor v at t (seconds) as a JSON line."""
  return orjson.dumps(
    {'event_id': event_id, 'event_type': 'page_view', 'event_time': t, 'anonymous_id': 'v'}
  )


def test_an_event_for_an_emitted_session_is_a_late_dead_letter():
  stream = (
    BeamTestStream()
    .add_elements([TimestampedValue(RawRecord(SOURCE, 1, visitor_line('a', T0), 0), T0)])
    .add_elements([TimestampedValue(RawRecord(SOURCE, 2, visitor_line('b', T0 + 60), 0), T0 + 60)])
    # The session of a and b is final once the watermark passes b + gap + lateness.
    .advance_watermark_to(Timestamp(T0 + 60 + 1800 + LATENESS_S + 1))
    .add_elements(
      [TimestampedValue(RawRecord(SOURCE, 3, visitor_line('late', T0 + 120), 0), T0 + 2400)]
    )
    .add_elements(
      [TimestampedValue(RawRecord(SOURCE, 4, visitor_line('next', T0 + 2400), 0), T0 + 2400)]
    )
    .advance_watermark_to(Timestamp(settled(T0 + 2400)))
    .advance_watermark_to_infinity()
  )
  with streaming_pipeline() as p:
    events = (p | stream | ParseEventsJsonl('EUR', NOW_US)).events
    outputs = events | StreamSessions()
    assert_that(
      outputs[EVENTS_TAG] | 'Ids' >> beam.Map(lambda e: e.event_id),
      equal_to(['a', 'b', 'next']),
      label='on time',
    )
    assert_that(
      outputs[DEAD_LETTER_TAG]
      | 'Late' >> beam.Map(lambda d: (d.reason, orjson.loads(d.payload)['event_id'], d.event_time)),
      equal_to([('late', 'late', (T0 + 120) * 1_000_000)]),
      label='late',
    )


def test_final_runs_are_the_prefix_whose_last_time_plus_gap_has_passed():
  gap = 10
  # Runs: [0, 5], [20], [30, 39]: a gap of exactly 10 ends a run, as in batch.
  times = [0, 5, 20, 30, 39]
  assert final_run_length(times, gap, 14) == 0
  assert final_run_length(times, gap, 15) == 2
  assert final_run_length(times, gap, 29) == 2
  assert final_run_length(times, gap, 30) == 3
  assert final_run_length(times, gap, 48) == 3
  assert final_run_length(times, gap, 49) == 5
  assert final_run_length([], gap, 100) == 0


def test_a_backlog_key_emits_its_earlier_session_without_waiting_for_the_later():
  """Two sessions of one key arrive together (a backlog read at once); once the
  watermark passes the first one's end + gap + lateness it is out, so an event
  for it after that is late, though the key's second session is still open."""

  backlog = [('a', T0), ('b', T0 + 60), ('c', T0 + 7200)]
  stream = (
    BeamTestStream()
    .add_elements(
      [
        TimestampedValue(RawRecord(SOURCE, n, visitor_line(i, t), 0), t)
        for n, (i, t) in enumerate(backlog)
      ]
    )
    .advance_watermark_to(Timestamp(T0 + 60 + 1800 + LATENESS_S + 1))
    .add_elements(
      [TimestampedValue(RawRecord(SOURCE, 5, visitor_line('late', T0 + 120), 0), T0 + 2400)]
    )
    .advance_watermark_to(Timestamp(settled(T0 + 7200)))
    .advance_watermark_to_infinity()
  )
  with streaming_pipeline() as p:
    events = (p | stream | ParseEventsJsonl('EUR', NOW_US)).events
    outputs = events | StreamSessions()
    assert_that(
      outputs[EVENTS_TAG] | 'Ids' >> beam.Map(lambda e: e.event_id),
      equal_to(['a', 'b', 'c']),
      label='on time',
    )
    assert_that(
      outputs[SESSIONS_TAG] | 'Counts' >> beam.Map(lambda s: s.event_count),
      equal_to([2, 1]),
      label='sessions',
    )
    assert_that(
      outputs[DEAD_LETTER_TAG] | 'Late' >> beam.Map(lambda d: orjson.loads(d.payload)['event_id']),
      equal_to(['late']),
      label='late',
    )


def test_streaming_dedup_keeps_the_copy_batch_keeps_whatever_the_arrival_order():
  def line(event_id, page, t=T0):
    return orjson.dumps(
      {
        'event_id': event_id,
        'event_type': 'page_view',
        'event_time': t,
        'anonymous_id': 'v',
        'page_url': f'https://shop.example/{page}',
      }
    )

  # x: c arrives first, b (which batch keeps: it sorts first) later, then an
  # equal retry of c. y: its differing copy comes after y's session went out.
  arrivals = [line('x', 'c'), line('x', 'b'), line('x', 'c'), line('y', 'a', T0 + 7200)]
  late_copy = line('y', 'z', T0 + 7200)
  stream = (
    BeamTestStream()
    .add_elements(
      [TimestampedValue(RawRecord(SOURCE, n, a, 0), T0) for n, a in enumerate(arrivals)]
    )
    .advance_watermark_to(Timestamp(T0 + 7200 + 1800 + LATENESS_S + 1))
    .add_elements([TimestampedValue(RawRecord(SOURCE, 9, late_copy, 0), T0 + 9600)])
    .advance_watermark_to(Timestamp(settled(T0 + 9600)))
    .advance_watermark_to_infinity()
  )
  parse = EventLineParser('EUR', NOW_US)
  batch_kept = [
    (kept.event_id, kept.page_url)
    for kept, _ in deduplicate(
      [parse(RawRecord(SOURCE, n, a, 0)) for n, a in enumerate([*arrivals, late_copy])]
    )
  ]
  assert batch_kept == [('x', 'https://shop.example/b'), ('y', 'https://shop.example/a')]
  with streaming_pipeline() as p:
    events = (p | stream | ParseEventsJsonl('EUR', NOW_US)).events
    outputs = events | StreamSessions()
    assert_that(
      outputs[EVENTS_TAG] | beam.Map(lambda e: (e.event_id, e.page_url)), equal_to(batch_kept)
    )
    assert_that(outputs[DEAD_LETTER_TAG], equal_to([]), label='no dead letter')
