from decimal import Decimal

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import NOW_US, beam_pipeline
from tests.golden import assert_matches_golden, outcomes
from transforms.event_time import EventTimeError, parse_event_time
from transforms.parse.order_chunks import ParseOrdersCsv
from transforms.parse.parse_orders import (
  OrdersCsvParser,
  clean_customer_id,
  parse_local_time,
  timezone,
)
from transforms.records import DEAD_LETTER_TAG, ORDER_LINES_TAG, LineChunk, RawRecord

SOURCE = 'orders-csv:fixtures/orders.csv'
LONDON = timezone('Europe/London')


def test_local_times():
  assert parse_local_time('12/1/2010 8:26', LONDON) == parse_event_time('2010-12-01T08:26:00Z')
  # Summer time: London is UTC+1.
  assert parse_local_time('7/1/2011 8:26', LONDON) == parse_event_time('2011-07-01T07:26:00Z')
  assert parse_local_time('2011-07-01 08:26:00', LONDON) == parse_event_time('2011-07-01T07:26:00Z')
  with pytest.raises(EventTimeError):
    parse_local_time('2/30/2010 8:26', LONDON)
  with pytest.raises(ValueError, match='unknown time zone'):
    timezone('Mars/Olympus')


def test_customer_ids():
  assert clean_customer_id('17850.0') == '17850'
  assert clean_customer_id(' ') is None
  assert clean_customer_id('A-17') == 'A-17'


def test_golden_fixture(pseudonymizer):
  parser = OrdersCsvParser(pseudonymizer, 'Europe/London', 'GBP', NOW_US)
  results = outcomes(parser, 'orders.csv', SOURCE)
  assert_matches_golden(results, 'orders.golden.json')
  by_line = {r['line']: r for r in results}
  assert by_line[1] == {'line': 1, 'filtered': 'header'}
  first = by_line[2]['event']
  assert (first['order_id'], first['quantity'], first['unit_price'], first['amount']) == (
    '536365',
    6,
    '2.55',
    '15.3',
  )
  assert (first['customer_id'], first['country'], first['currency']) == ('17850', 'GB', 'GBP')
  assert by_line[4]['event']['line_type'] == 'service'  # POST
  discount = by_line[6]['event']
  assert (discount['is_cancellation'], discount['line_type'], discount['amount']) == (
    True,
    'adjustment',
    '-27.5',
  )
  assert by_line[7]['event']['country'] == 'IE'  # EIRE
  assert by_line[7]['event']['description'] == 'SET OF 3 COLOURED  FLYING DUCKS'
  assert by_line[8] == {'line': 8, 'filtered': 'stock_adjustment'}
  assert by_line[9]['dead_letter'] == 'negative_quantity'
  assert by_line[10]['dead_letter'] == 'wrong_column_count'
  assert by_line[11]['dead_letter'] == 'invalid_order_time'
  assert by_line[12]['dead_letter'] == 'invalid_quantity,invalid_price'
  assert by_line[13]['dead_letter'] == 'cancellation_not_negative'
  assert by_line[14]['event']['amount'] == str(Decimal('-11062.06'))  # bad debt: an adjustment


def test_pipeline_routes_lines_and_dead_letters(pseudonymizer):
  lines = [b'536365,71053,LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom', b'nonsense']
  with beam_pipeline() as p:
    parsed = (
      p
      | beam.Create(
        [LineChunk.of_records([RawRecord(SOURCE, n, x, 0) for n, x in enumerate(lines, 1)])]
      )
      | ParseOrdersCsv(pseudonymizer, 'UTC', 'EUR', NOW_US)
    )
    assert_that(
      parsed[ORDER_LINES_TAG] | 'Lines' >> beam.Map(lambda x: (x.order_id, x.amount)),
      equal_to([('536365', '20.34')]),
      label='lines',
    )
    assert_that(
      parsed[DEAD_LETTER_TAG] | 'Letters' >> beam.Map(lambda d: d.reason),
      equal_to(['wrong_column_count']),
      label='dead letters',
    )
