"""Replaying legacy exports into a stream as canonical JSON events.

``shopstream kinesis put`` and ``shopstream kafka put`` parse each input with
the batch parsers and send every usable event as one canonical JSON record
(key = session key), carrying the event_id the batch path derives, so that
the streaming path computes the same ids and sessions. Lines the batch path
would filter or dead-letter are counted and not sent.

Events are sent in event-time order across all sources, as they would have
arrived live: the streaming path judges lateness by event time, and a replay
of one export after another would make the second one late. (The events are
held in memory to be ordered: replay large histories in date-range slices.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import orjson

from beam_pipelines.io.sources import (
  ACCESS_LOG,
  EVENTS_JSONL,
  expand_inputs,
  parse_file,
  parse_source_spec,
)
from transforms.dead_letters import RecordError, RecordFiltered
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.event_time import format_us
from transforms.parse.parse_access_log import AccessLogParser
from transforms.parse.parse_events import EventLineParser
from transforms.records import Event

REPLAYABLE_KINDS = (EVENTS_JSONL, ACCESS_LOG)
_DROPPED_FIELDS = frozenset({'source', 'session_id'})


def canonical_json(event: Event) -> bytes:
  """The event as a canonical JSON object: what events-jsonl parses back to it."""
  fields = {}
  for name, value in event._asdict().items():
    if value is None or name in _DROPPED_FIELDS:
      continue
    if name == 'properties':
      value = orjson.loads(value)
    elif name == 'event_time':
      value = format_us(value)  # ISO with microseconds: a bare number would read as ms
    fields[name] = value
  return orjson.dumps(fields)


def replay_events(
  sources: list[str], pseudonymizer: Pseudonymizer, now_us: int, counts: Counter
) -> Iterator[Event]:
  """Every usable event of the sources, in file order."""
  files = expand_inputs([parse_source_spec(text) for text in sources])
  for file in files:
    if file.kind not in REPLAYABLE_KINDS:
      raise ValueError(
        f'put replays clickstream ({", ".join(REPLAYABLE_KINDS)}), not {file.kind}: '
        'order exports and the product dimension stay batch inputs'
      )
    parse = (
      EventLineParser('EUR', now_us)
      if file.kind == EVENTS_JSONL
      else AccessLogParser(pseudonymizer, now_us)
    )
    for _, outcome in parse_file(file, parse):  # local or s3://, gzipped or not
      if isinstance(outcome, RecordFiltered):
        counts['filtered'] += 1
      elif isinstance(outcome, RecordError):
        counts['dead_letter'] += 1
      else:
        counts['sent'] += 1
        yield outcome


def events_in_time_order(
  sources: list[str], pseudonymizer: Pseudonymizer, now_us: int, counts: Counter
) -> list[Event]:
  """replay_events of all sources, in event-time order (ties by event_id)."""
  return sorted(
    replay_events(sources, pseudonymizer, now_us, counts),
    key=lambda event: (event.event_time, event.event_id),
  )
