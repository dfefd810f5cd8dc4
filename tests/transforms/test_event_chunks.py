"""The events-jsonl chunk parser gives each line the line parser's outcome.

Lines of every shape (the fixture, generated exports, hand-made edge cases,
random objects and mutations) go through parse_chunk; the lines it decides must
come out exactly as EventLineParser makes them (every column), and the lines it
leaves must be those the column rules do not cover or reject.
"""

from __future__ import annotations

import gzip
import json
import random
import re

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from tests.conftest import NOW_US, fixture_path
from tests.transforms import chunk_agreement
from transforms.event_batches import from_batch
from transforms.event_time import _COMMON_ISO, EventTimeError, iso_times_us, parse_event_time
from transforms.parse.event_chunks import EventChunkParser
from transforms.records import Event, LineChunk, RawRecord

PARSER = EventChunkParser('EUR', NOW_US)
T = '2026-03-01T10:00:00Z'

# Plain lines: each one is for the column path (asserted below).
PLAIN = [
  f'{{"event_id":"e1","event_type":"page_view","event_time":"{T}","anonymous_id":"a1"}}',
  '{"event_id":"e2","event_type":"AddToCart","event_time":1772362800,"user_id":"u1",'
  '"product_id":"SKU-1","quantity":2,"price":"19.90"}',
  '{"event_id":"e3","event_type":"purchase","event_time":1772362800123,"user_id":42,'
  '"order_id":"O-1","price":12,"currency":"usd"}',
  f'{{"event_type":"view","event_time":"{T}","anonymous_id":"a2","product_id":"SKU-2"}}',
  '{ "event_id" : " e5 " , "event_type" : "page" , "event_time" : "2026-03-01T10:00:00.250+01:00"'
  ' , "anonymous_id" : " a3 ", "user_id": "", "page_url": "/p?q=1", "referrer": " " }',
  f'{{"event_id":"e6","event_type":"search","event_time":"{T}","anonymous_id":"a4",'
  '"app_version":"2.1","ab_bucket":7}',
  '{"event_id":"e7","event_type":"page_view","event_time":"2026-03-01 10:00:00-05:30",'
  '"anonymous_id":"a5","quantity":"3"}',
  '{"event_id":"e8","event_type":"page_view","event_time":"1772362800","anonymous_id":"a6",'
  '"ip":"10.1.2.3","user_agent":"Mozilla/5.0 (X11)"}',
  f'{{"event_id":"","event_type":"page_view","event_time":"{T}","anonymous_id":"a7"}}',
  '{"event_id":"e10","event_type":"page_view","event_time":"2024-02-29T23:59:59.999-00:00",'
  '"anonymous_id":"a8"}',
]
# Lines the line parser must decide: what the column rules reject or do not cover.
OTHER = [
  f'{{"event_id":"x1","event_type":"teleport","event_time":"{T}","anonymous_id":"a"}}',
  f'{{"event_id":"x2","event_type":" ","event_time":"{T}","anonymous_id":"a"}}',
  f'{{"event_id":"x3","event_type":7,"event_time":"{T}","anonymous_id":"a"}}',
  '{"event_id":"x4","event_type":"page_view","event_time":"2026-02-30T10:00:00Z","anonymous_id":"a"}',
  '{"event_id":"x5","event_type":"page_view","event_time":"2026-03-01T10:00:00","anonymous_id":"a"}',
  '{"event_id":"x6","event_type":"page_view","event_time":1,"anonymous_id":"a"}',
  '{"event_id":"x7","event_type":"page_view","event_time":4102444800,"anonymous_id":"a"}',
  '{"event_id":"x8","event_type":"page_view","event_time":999999999999999999,"anonymous_id":"a"}',
  f'{{"event_id":"x9","event_type":"page_view","event_time":"{T}"}}',
  f'{{"event_id":"x10","event_type":"page_view","event_time":"{T}","anonymous_id":" "}}',
  f'{{"event_id":"x11","event_type":"page_view","event_time":"{T}","anonymous_id":"{"a" * 257}"}}',
  f'{{"event_id":"x12","event_type":"purchase","event_time":"{T}","anonymous_id":"a","price":"-1"}}',
  f'{{"event_id":"x13","event_type":"purchase","event_time":"{T}","anonymous_id":"a",'
  '"price":"1.00001"}',
  f'{{"event_id":"x14","event_type":"purchase","event_time":"{T}","anonymous_id":"a",'
  '"currency":"EURO"}',
  f'{{"event_id":"x15","event_type":"add","event_time":"{T}","anonymous_id":"a","quantity":0}}',
  f'{{"event_id":"x16","event_type":"add","event_time":"{T}","anonymous_id":"a","properties":"x"}}',
  f'{{"event_id":"x17","event_type":"add","event_time":"{T}","anonymous_id":"a","price":1.5}}',
  f'{{"event_id":"x18","event_type":"add","event_time":"{T}","anonymous_id":"a","ok":true}}',
  f'{{"event_id":"x19","event_type":"add","event_time":"{T}","anonymous_id":"a","n":null}}',
  f'{{"event_id":"x20","event_type":"add","event_time":"{T}","anonymous_id":"a",'
  '"properties":{"k":1}}',
  f'{{"event_id":"x21","event_type":"add","event_time":"{T}","anonymous_id":"caf\u00e9"}}',
  f'{{"event_id":"x22","event_type":"add","event_time":"{T}","anonymous_id":"a\\"b"}}',
  f'{{"event-id":"x23","event_type":"add","event_time":"{T}","anonymous_id":"a"}}',
  '["not", "an", "object"]',
  '{"event_id": "x25", "event_type": "add"',
  '',
  '   ',
]


def records_of(lines: list) -> list[RawRecord]:
  return chunk_agreement.records_of(lines, 'events-jsonl:test')


def assert_same_outcomes(records: list[RawRecord]) -> set[int]:
  return chunk_agreement.assert_same_outcomes(PARSER, records)


def test_plain_lines_take_the_column_path_with_the_line_parsers_outcome():
  records = records_of(PLAIN)
  assert assert_same_outcomes(records) == set()
  events = {
    e.event_id: e
    for e in from_batch(Event, PARSER.parse_chunk(LineChunk.of_records(records)).table)
  }
  assert events['e3'].event_time == 1772362800123000 and events['e3'].currency == 'USD'
  assert events['e2'].currency == 'EUR' and events['e2'].quantity == 2
  assert events['e6'].properties == '{"ab_bucket":7,"app_version":"2.1"}'
  assert events['e5'].anonymous_id == 'a3' and events['e5'].user_id is None
  assert sum(e.startswith('h-') for e in events) == 2  # no id, or a blank one: derived


def test_other_lines_are_left_to_the_line_parser():
  records = records_of(OTHER + PLAIN)
  left = assert_same_outcomes(records)
  assert left == set(range(1, len(OTHER) + 1))


def test_a_key_twice_leaves_the_whole_chunk_to_the_line_parser():
  twice = (
    f'{{"event_id":"d","event_id":"e","event_type":"add","event_time":"{T}","anonymous_id":"a"}}'
  )
  records = records_of(PLAIN + [twice])
  assert assert_same_outcomes(records) == set(range(1, len(PLAIN) + 2))


def test_fixture_and_generated_exports(tmp_path):
  generate(GeneratorConfig(output_dir=str(tmp_path), events=3000, days=2))
  generated = []
  for path in sorted(tmp_path.glob('events-*.jsonl.gz')):
    with gzip.open(path, 'rb') as f:
      generated += [line.rstrip(b'\r\n') for line in f]
  with open(fixture_path('events.jsonl'), 'rb') as f:
    fixture = [line.rstrip(b'\r\n') for line in f]
  records = records_of(fixture + generated)
  left = assert_same_outcomes(records)
  # The generator's exports are mostly plain: the column path is the common one.
  assert len(left) < len(records) / 20


_KEYS = [
  'event_id',
  'event_type',
  'event_time',
  'user_id',
  'anonymous_id',
  'product_id',
  'price',
  'currency',
  'quantity',
  'page_url',
  'properties',
  'extra',
]
_VALUES = st.one_of(
  st.sampled_from(
    [
      '',
      ' ',
      'a',
      ' b ',
      'page_view',
      'Add To Cart',
      'buy',
      'usd',
      'EUR',
      'E1',
      '0',
      '7',
      '19.99',
      '-3',
      '1e3',
      T,
      '2026-03-01T10:00:00.5Z',
      '2026-03-01T10:00:00+24:00',
      '1772362800',
      'x' * 300,
    ]
  ),
  st.integers(-10, 2_000_000_000_000),
  st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
  st.booleans(),
  st.none(),
  st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(_KEYS), _VALUES, min_size=1), max_size=25))
def test_random_objects(objects):
  lines = []
  for obj in objects:
    obj.setdefault('event_type', 'page_view')
    obj.setdefault('event_time', T)
    lines.append(json.dumps(obj, separators=(',', ':')))
  assert_same_outcomes(records_of(lines))


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_mutated_lines(rng: random.Random):
  alphabet = b' "{}:,\\-+.09azZT\x00\xe9'
  assert_same_outcomes(records_of(chunk_agreement.mutated(rng, PLAIN + OTHER, alphabet)))


def test_iso_times_match_parse_event_time():
  rng = random.Random(7)
  texts = []
  for _ in range(3000):
    texts.append(
      f'{rng.choice([0, 1, 1900, 2024, 2026, 9999]):04d}-{rng.randint(0, 13):02d}-'
      f'{rng.randint(0, 32):02d}{rng.choice("TT ")}{rng.randint(0, 25):02d}:'
      f'{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d}'
      f'{rng.choice(["", ".123", ".5", ".999999"])}'
      f'{rng.choice(["Z", "Z", "+01:00", "-05:30", "+23:59", "+24:00", "-00:00", "+05:60", ""])}'
    )
  micros, decided = iso_times_us(pa.array(texts))
  assert decided.sum() > 200  # valid common shapes are decided here (242 of these)
  for text, time_us, is_decided in zip(texts, micros.tolist(), decided.tolist(), strict=True):
    if is_decided:
      assert time_us == parse_event_time(text), text
    elif re.fullmatch(_COMMON_ISO.strip('^$'), text):
      # Undecided in a common shape: parse_event_time rejects it, or it is an offset
      # fromisoformat also takes (+05:60) or a year a float64 cannot hold in microseconds.
      try:
        parse_event_time(text)
      except EventTimeError:
        continue
      assert text[-6] in '+-' and int(text[-2:]) >= 60 or not 1686 <= int(text[:4]) <= 2254, text
