"""ParseEventsJsonl: canonical JSON event lines to Events, with dead letters.

lines | ParseEventsJsonl(default_currency='EUR', now_us=now)
-> DoOutputsTuple: [EVENTS_TAG] Events, [DEAD_LETTER_TAG] DeadLetters
"""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
import orjson

from transforms.dead_letters import ParseRecords, RecordError, RecordFiltered
from transforms.parse.normalize import canonical_event
from transforms.records import (
  DEAD_LETTER_TAG,
  EVENTS_TAG,
  DeadLetter,
  Event,
  RawRecord,
  typed_outputs,
)

STEP = 'parse_events_jsonl'
_BOM = b'\xef\xbb\xbf'


class EventLineParser:
  """The parse function for one JSON line; a class so its config pickles."""

  def __init__(self, default_currency: str, now_us: Optional[int]):
    self.default_currency = default_currency
    self.now_us = now_us

  def __call__(self, record: RawRecord) -> Event:
    payload = record.payload
    if payload.startswith(_BOM):
      payload = payload[len(_BOM) :]
    if not payload.strip():
      raise RecordFiltered('blank_line')
    try:
      obj = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
      try:
        payload.decode('utf-8')
      except UnicodeDecodeError as decode_error:
        raise RecordError.single(
          'invalid_utf8', f'line is not UTF-8 ({decode_error.reason} at byte {decode_error.start})'
        ) from None
      raise RecordError.single('invalid_json', f'line is not valid JSON: {e}') from None
    if not isinstance(obj, dict):
      raise RecordError.single('not_an_object', f'line is JSON {type(obj).__name__}, not an object')
    # A stream has no one "now": each record is judged against its arrival.
    now_us = self.now_us if self.now_us is not None else record.input_time
    return canonical_event(
      obj, source=record.source, default_currency=self.default_currency, now_us=now_us
    )


class ParseEventsJsonl(beam.PTransform):
  """RawRecords of events-jsonl lines to Events; the rest to dead letters.

  ``now_us`` bounds event times (a day ahead at most: transforms/event_time.py);
  None bounds each record by its own ``input_time``, a Kinesis record's arrival,
  so a stream that runs for weeks keeps accepting new events.
  """

  def __init__(self, default_currency: str, now_us: Optional[int]):
    super().__init__()
    self._parser = EventLineParser(default_currency, now_us)

  def expand(self, records):
    outputs = records | 'ParseEventLines' >> beam.ParDo(
      ParseRecords(self._parser, STEP)
    ).with_output_types(Event).with_outputs(DEAD_LETTER_TAG, main=EVENTS_TAG)
    return typed_outputs(outputs, **{DEAD_LETTER_TAG: DeadLetter})
