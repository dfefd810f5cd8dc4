"""Fuzz: every parser, fed random and mutated records, returns a record or a
dead-letter/filter decision, never anything else (no crash, no hang).

Mutations of real lines: truncation, NUL and invalid-UTF-8 bytes, huge
fields, cp1252 text, impossible and far-future dates, wrong JSON types,
repeated lines. A parsed record must also be sane: a canonical event type,
an id, a time inside the plausible range.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import NOW_US, TEST_SALT, fixture_path
from transforms.dead_letters import RecordError, RecordFiltered, check_size
from transforms.enrich.product_dimension import parse_catalog_line, parse_taxonomy_line
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.event_time import MAX_FUTURE_US, MIN_PLAUSIBLE_US
from transforms.parse.event_types import CANONICAL_EVENT_TYPES
from transforms.parse.fixed_width import load_layout
from transforms.parse.parse_access_log import AccessLogParser
from transforms.parse.parse_events import EventLineParser
from transforms.parse.parse_fixed_orders import REQUIRED_COLUMNS, FixedWidthOrdersParser
from transforms.parse.parse_orders import OrdersCsvParser
from transforms.records import Category, Event, OrderLine, Product, RawRecord

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PSEUDONYMIZER = Pseudonymizer(TEST_SALT)


def lines_of(path: str) -> list[bytes]:
  with open(path, 'rb') as f:
    return [line.rstrip(b'\r\n') for line in f if line.strip()]


CATALOG = [
  b'product_id,title,brand,category_id,price,currency',
  b'SKU-1,"Tent, 2 person",Acme,10,99.50,EUR',
  b'SKU-2,Lamp,,11,5,gbp',
]
TAXONOMY = [b'# Google_Product_Taxonomy_Version: 2021-09-21', b'10 - Outdoor > Camping > Tents']
FIXED_LAYOUT = load_layout(os.path.join(ROOT, 'samples/orders-fixed/layout.yaml'), REQUIRED_COLUMNS)
PARSERS = {
  'events-jsonl': (EventLineParser('EUR', NOW_US), lines_of(fixture_path('events.jsonl')), Event),
  'access-log': (
    AccessLogParser(PSEUDONYMIZER, NOW_US),
    lines_of(fixture_path('access.log')),
    Event,
  ),
  'orders-csv': (
    OrdersCsvParser(PSEUDONYMIZER, 'Europe/London', 'GBP', NOW_US),
    lines_of(fixture_path('orders.csv')),
    OrderLine,
  ),
  'orders-fixed': (
    FixedWidthOrdersParser(FIXED_LAYOUT, 'cp1252', PSEUDONYMIZER, 'Europe/London', 'GBP', NOW_US),
    lines_of(os.path.join(ROOT, 'samples/orders-fixed/orders.txt')),
    OrderLine,
  ),
  'catalog-csv': (parse_catalog_line, CATALOG, Product),
  'taxonomy': (parse_taxonomy_line, TAXONOMY, Category),
}


@st.composite
def mutated(draw, lines: list[bytes]) -> bytes:
  line = bytearray(draw(st.sampled_from(lines)))
  for _ in range(draw(st.integers(0, 3))):
    kind = draw(
      st.sampled_from(
        ['truncate', 'nul', 'bad_utf8', 'insert', 'huge', 'cp1252', 'future', 'type', 'double']
      )
    )
    at = draw(st.integers(0, len(line)))
    if kind == 'truncate':
      del line[at:]
    elif kind == 'nul':
      line[at:at] = b'\x00'
    elif kind == 'bad_utf8':
      line[at:at] = draw(st.sampled_from([b'\xff', b'\xc3', b'\xed\xa0\x80', b'\x9f']))
    elif kind == 'insert':
      line[at:at] = draw(st.binary(max_size=12))
    elif kind == 'huge':
      line[at:at] = b'x' * draw(st.sampled_from([5_000, 200_000]))
    elif kind == 'cp1252':
      line[at:at] = 'Café – £5'.encode('cp1252')
    elif kind == 'future':
      line = bytearray(
        bytes(line).replace(b'2026', draw(st.sampled_from([b'2999', b'1899', b'0000', b'9999'])))
      )
    elif kind == 'type':
      line = bytearray(bytes(line).replace(b'"2026-', b'[2026, "').replace(b'"a-1"', b'{"id": 1}'))
    elif kind == 'double':
      line = line + b',' + line
  return bytes(line)


def check(kind: str, payload: bytes) -> None:
  parse, _, record_type = PARSERS[kind]
  record = RawRecord(f'{kind}:fuzz', 7, payload, NOW_US)
  try:
    check_size(record)
    parsed = parse(record)
  except (RecordError, RecordFiltered):
    return
  assert isinstance(parsed, record_type)
  if record_type is Event:
    assert parsed.event_type in CANONICAL_EVENT_TYPES
    assert parsed.event_id
    assert MIN_PLAUSIBLE_US <= parsed.event_time <= NOW_US + MAX_FUTURE_US
  if record_type is OrderLine:
    assert parsed.order_id and MIN_PLAUSIBLE_US <= parsed.order_time <= NOW_US + MAX_FUTURE_US


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fuzz(kind: str):
  @FUZZ
  @given(payload=st.one_of(mutated(PARSERS[kind][1]), st.binary(max_size=300)))
  def test(payload):
    check(kind, payload)

  test.__name__ = f'test_{kind.replace("-", "_")}_never_crashes'
  return test


test_events_jsonl_never_crashes = _fuzz('events-jsonl')
test_access_log_never_crashes = _fuzz('access-log')
test_orders_csv_never_crashes = _fuzz('orders-csv')
test_orders_fixed_never_crashes = _fuzz('orders-fixed')
test_catalog_csv_never_crashes = _fuzz('catalog-csv')
test_taxonomy_never_crashes = _fuzz('taxonomy')


def test_the_mutations_reach_both_outcomes():
  """The fuzz must exercise records that parse and records that do not."""
  outcomes = {'parsed': 0, 'rejected': 0}
  for kind, (parse, lines, _) in PARSERS.items():
    for line in lines:
      try:
        parse(RawRecord(f'{kind}:fuzz', 1, line, NOW_US))
        outcomes['parsed'] += 1
      except (RecordError, RecordFiltered):
        outcomes['rejected'] += 1
      for broken in (line[: len(line) // 2], line + b'\xff\x00'):
        try:
          parse(RawRecord(f'{kind}:fuzz', 1, broken, NOW_US))
        except (RecordError, RecordFiltered):
          outcomes['rejected'] += 1
  assert outcomes['parsed'] > 10 and outcomes['rejected'] > 10
