"""Rejected records: the errors parsers raise and the DoFn that routes them.

A parse function turns one RawRecord into a record (an Event, an OrderLine,
a Product...), or raises RecordError
(unusable: becomes a dead letter with every reason) or RecordFiltered
(deliberately left out: counted by reason). ParseRecords wraps such a
function so that every parser counts and routes records the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Optional, Union

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue

from transforms import accounting
from transforms.records import DEAD_LETTER_TAG, DeadLetter, RawRecord

# Payloads above this are not parsed; the dead letter keeps their first bytes.
MAX_RECORD_BYTES = 1 << 20
KEPT_PAYLOAD_BYTES = 1 << 16


class FieldError(ValueError):
  """One field of a record is wrong; ``code`` is the machine-readable reason."""

  def __init__(self, code: str, message: str):
    super().__init__(message)
    self.code = code


class RecordError(ValueError):
  """A record is unusable; ``problems`` lists every (code, message) found."""

  def __init__(self, problems: list[tuple[str, str]], event_time: Optional[int] = None):
    super().__init__('; '.join(message for _, message in problems))
    self.problems = problems
    self.event_time = event_time

  @classmethod
  def single(cls, code: str, message: str, event_time: Optional[int] = None) -> RecordError:
    return cls([(code, message)], event_time)

  @property
  def reason(self) -> str:
    return ','.join(dict.fromkeys(code for code, _ in self.problems))


class RecordFiltered(Exception):
  """A record deliberately left out (a static asset, a blank line)."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


def make_dead_letter(record: RawRecord, error: RecordError, step: str) -> DeadLetter:
  payload = record.payload
  detail = str(error)
  if len(payload) > MAX_RECORD_BYTES:
    detail += f' (payload of {len(payload)} bytes cut to its first {KEPT_PAYLOAD_BYTES})'
    payload = payload[:KEPT_PAYLOAD_BYTES]
  return DeadLetter(
    payload=payload,
    reason=error.reason,
    detail=detail,
    step=step,
    source=record.source,
    position=str(record.position),
    event_time=error.event_time,
    input_time=record.input_time,
  )


def check_size(record: RawRecord) -> None:
  if len(record.payload) > MAX_RECORD_BYTES:
    raise RecordError.single(
      'record_too_large', f'record is {len(record.payload)} bytes (max {MAX_RECORD_BYTES})'
    )


ParseFn = Callable[[RawRecord], tuple]  # returns a record NamedTuple


class ParseRecords(accounting.CountingDoFn):
  """Applies a parse function; records go to the main output, the rest is accounted."""

  def __init__(self, parse: ParseFn, step: str):
    self._parse = parse
    self._step = step

  def process(self, record: RawRecord) -> Iterator[Union[tuple, pvalue.TaggedOutput]]:
    outcome = self.outcome(record)
    if isinstance(outcome, DeadLetter):
      yield pvalue.TaggedOutput(DEAD_LETTER_TAG, outcome)
    elif outcome is not None:
      yield outcome

  def outcome(self, record: RawRecord) -> Optional[tuple]:
    return record_outcome(self, record, self._parse, self._step)


def record_outcome(
  counter: Union[accounting.CountingDoFn, accounting.Counts],
  record: RawRecord,
  parse: ParseFn,
  step: str,
) -> Optional[tuple]:
  """The parsed record, its DeadLetter, or None when filtered; counted either way."""
  counter.count(accounting.READ, record.source)
  try:
    check_size(record)
    return parse(record)
  except RecordFiltered as filtered:
    counter.count(accounting.FILTERED, record.source)
    counter.count(accounting.FILTERED_REASON, filtered.reason)
    return None
  except RecordError as error:
    return make_dead_letter(record, error, step)


def kind_of_source(source: str) -> str:
  """The input kind of a record's source, ``KIND:PATH``."""
  return source.partition(':')[0]


def first_times_of_tables(table: pa.Table) -> list[tuple[str, int]]:
  """(source, earliest event_time) of each source in an Arrow table of records."""
  firsts = table.group_by('source').aggregate([('event_time', 'min')])
  sources = firsts.column('source').to_pylist()
  return list(zip(sources, firsts.column('event_time_min').to_pylist(), strict=True))


def dated_by_its_input(letter: DeadLetter, first_times: dict) -> DeadLetter:
  """A letter without a readable time, dated by the earliest time read from its input."""
  if letter.event_time is not None or letter.source not in first_times:
    return letter
  return letter._replace(input_time=first_times[letter.source])


class DateTimelessLetters(beam.PTransform):
  """Dead letters with no readable time take the earliest time read from their input.

  Copying a file changes its mtime, the fallback date: it moved such letters
  to another partition day. An input's own records do not move. The earliest
  time counts every record with a readable time, the dead letters among them
  too, so that a replay recovering some of them dates the rest alike; an
  input with none (a catalog, a file of garbage) keeps its input time.
  ``times``: PCollections of (source, time) of the records parsed.
  """

  def __init__(self, times: list):
    super().__init__()
    self._times = times

  def expand(self, letters):
    letter_times = (
      letters
      | 'TimedLetters' >> beam.Filter(lambda letter: letter.event_time is not None)
      | 'LetterTimes'
      >> beam.Map(lambda letter: (letter.source, letter.event_time)).with_output_types(
        tuple[str, int]
      )
    )
    first_times = (
      (*self._times, letter_times)
      | 'FlattenTimes' >> beam.Flatten()
      | 'FirstTimePerInput' >> beam.CombinePerKey(min)
    )
    return letters | 'DateByInput' >> beam.Map(
      dated_by_its_input, first_times=pvalue.AsDict(first_times)
    ).with_output_types(DeadLetter)
