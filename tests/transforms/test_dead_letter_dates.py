"""Dead letters without a time of their own: dated by their input's earliest time."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import beam_pipeline
from transforms.dead_letters import DateTimelessLetters, first_times_of_tables
from transforms.records import DeadLetter

MTIME = 1_780_000_000_000_000


def letter(source: str, event_time=None) -> DeadLetter:
  return DeadLetter(b'x', 'invalid_json', '', 'parse', source, '1', event_time, MTIME)


def test_first_times_of_a_table_per_source():
  table = pa.table({'source': ['a', 'b', 'a'], 'event_time': [30, 20, 10], 'other': [1, 2, 3]})
  assert sorted(first_times_of_tables(table)) == [('a', 10), ('b', 20)]


def test_a_timeless_letter_takes_the_earliest_time_of_its_input_letters_included():
  letters = [
    letter('a'),  # no time: the earliest of a's, here a timed letter's
    letter('a', event_time=5),
    letter('b'),  # b's records only
    letter('c'),  # nothing timed read from c: keeps its input time
  ]
  with beam_pipeline() as p:
    times = p | 'Times' >> beam.Create([('a', 10), ('b', 20), ('b', 15)])
    dated = p | 'Letters' >> beam.Create(letters) | DateTimelessLetters([times])
    assert_that(
      dated | beam.Map(lambda d: (d.source, d.event_time, d.input_time)),
      equal_to([('a', None, 5), ('a', 5, MTIME), ('b', None, 15), ('c', None, MTIME)]),
    )
