import datetime as dt
import os
from decimal import Decimal

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.io.sources import CHUNK_BYTES, ReadLines, expand_inputs, parse_source_spec
from tests.conftest import NOW_US, beam_pipeline
from tests.golden import assert_matches_golden, outcomes
from transforms.parse.fixed_width import cut_record, layout_from_dict, load_layout
from transforms.parse.order_chunks import ParseFixedWidthOrders
from transforms.parse.parse_fixed_orders import REQUIRED_COLUMNS, FixedWidthOrdersParser
from transforms.records import DEAD_LETTER_TAG, ORDER_LINES_TAG

SAMPLES = os.path.join(os.path.dirname(__file__), '..', '..', 'samples', 'orders-fixed')
LAYOUT = os.path.join(SAMPLES, 'layout.yaml')
EBCDIC_LAYOUT = os.path.join(SAMPLES, 'layout-ebcdic.yaml')


def test_sample_layouts_load():
  layout = load_layout(LAYOUT, REQUIRED_COLUMNS)
  assert (layout.record_length, layout.encoding, layout.newline, layout.year_pivot) == (
    100,
    'cp1252',
    True,
    70,
  )
  ebcdic = load_layout(EBCDIC_LAYOUT, REQUIRED_COLUMNS)
  assert (ebcdic.encoding, ebcdic.newline, ebcdic.columns) == ('cp037', False, layout.columns)


@pytest.mark.parametrize(
  'spec,message',
  [
    ({}, 'columns'),
    ({'columns': [{'name': 'a', 'start': 1}]}, 'needs name, start and length'),
    ({'columns': [{'name': 'a', 'start': 1, 'length': 2, 'type': 'blob'}]}, "type 'blob'"),
    (
      {'columns': [{'name': 'a', 'start': 1, 'length': 3}, {'name': 'b', 'start': 3, 'length': 1}]},
      'a and b overlap',
    ),
    ({'columns': [{'name': 'a', 'start': 1, 'length': 3, 'type': 'date'}]}, 'needs a format'),
    (
      {
        'columns': [{'name': 'a', 'start': 1, 'length': 10, 'type': 'date', 'format': 'YYMMDDHHMM'}]
      },
      'repeats a part',
    ),
    ({'record_length': 2, 'columns': [{'name': 'a', 'start': 1, 'length': 3}]}, 'ends after'),
    ({'encoding': 'klingon', 'columns': [{'name': 'a', 'start': 1, 'length': 3}]}, 'encoding'),
    ({'columns': [{'name': 'a', 'start': 1, 'length': 3}]}, "lacks columns ['b']"),
  ],
)
def test_bad_layouts_are_refused_with_the_reason(spec, message):
  with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
    layout_from_dict(spec, required=('b',) if 'lacks' in message else ())


def test_columns_convert_by_type_and_two_digit_years_pivot():
  layout = layout_from_dict(
    {
      'columns': [
        {'name': 'n', 'start': 1, 'length': 4, 'type': 'int'},
        {'name': 'd', 'start': 5, 'length': 6, 'type': 'date', 'format': 'YYMMDD'},
        {'name': 'p', 'start': 11, 'length': 5, 'type': 'decimal', 'decimals': 2},
        {'name': 't', 'start': 16, 'length': 4},
      ]
    }
  )
  values, errors = cut_record(b'-01269123101991 ab ', layout, 'cp1252')
  assert errors == []
  assert values == {'n': -12, 'd': dt.datetime(2069, 12, 31), 'p': Decimal('19.91'), 't': 'ab'}
  values, _ = cut_record(b'0001700101000010000', layout, 'cp1252')
  assert values['d'] == dt.datetime(1970, 1, 1)
  _, errors = cut_record(b'x001991332000\x81\x810000', layout, 'cp1252')
  assert [(e.column, e.code) for e in errors] == [
    ('n', 'invalid_number'),
    ('d', 'invalid_date'),
    ('p', 'undecodable_bytes'),
  ]
  assert str(errors[0]).startswith('column n:')


def test_golden_sample(pseudonymizer):
  parser = FixedWidthOrdersParser(
    load_layout(LAYOUT, REQUIRED_COLUMNS), 'cp1252', pseudonymizer, 'Europe/London', 'GBP', NOW_US
  )
  results = outcomes(
    parser,
    os.path.join('..', '..', 'samples', 'orders-fixed', 'orders.txt'),
    'orders-fixed:samples/orders-fixed/orders.txt',
  )
  assert_matches_golden(results, 'orders_fixed.golden.json')
  lantern, postage, cafe, cancel, bad_qty, bad_date, short = results
  assert (lantern['event']['quantity'], lantern['event']['unit_price']) == (6, '2.55')
  assert postage['event']['line_type'] == 'service'
  assert (
    cafe['event']['description'] == 'CAFÉ SET (4 CUPS)' and cafe['event']['customer_id'] is None
  )
  assert (cancel['event']['is_cancellation'], cancel['event']['amount']) == (True, '-5.1')
  assert bad_qty['dead_letter'] == 'invalid_number' and 'column quantity' in bad_qty['detail']
  assert bad_date['dead_letter'] == 'invalid_date' and 'column invoice_date' in bad_date['detail']
  assert short['dead_letter'] == 'wrong_record_length'


def test_ebcdic_records_without_line_ends_give_the_same_lines(pseudonymizer):
  layouts = {
    'cp1252': load_layout(LAYOUT, REQUIRED_COLUMNS),
    'cp037': load_layout(EBCDIC_LAYOUT, REQUIRED_COLUMNS),
  }
  files = {'cp1252': 'orders.txt', 'cp037': 'orders.cp037'}

  def strip(line):
    return line._replace(source='', position=0)

  with beam_pipeline() as p:
    parsed = {}
    for encoding, layout in layouts.items():
      inputs = expand_inputs([parse_source_spec(f'orders-fixed={SAMPLES}/{files[encoding]}')])
      read = p | f'Read {encoding}' >> ReadLines(
        inputs,
        record_length=None if layout.newline else layout.record_length,
        chunk_bytes=CHUNK_BYTES,
      )
      parsed[encoding] = read['records'] | f'Parse {encoding}' >> ParseFixedWidthOrders(
        layout, layout.encoding, pseudonymizer, 'Europe/London', 'GBP', NOW_US
      )
    assert_that(parsed['cp037'][DEAD_LETTER_TAG], equal_to([]), label='no ebcdic dead letters')
    ebcdic = parsed['cp037'][ORDER_LINES_TAG] | 'StripEbcdic' >> beam.Map(strip)
    windows = parsed['cp1252'][ORDER_LINES_TAG] | 'StripWindows' >> beam.Map(strip)
    assert_that(
      ebcdic | 'CountEbcdic' >> beam.combiners.Count.Globally(), equal_to([4]), label='four records'
    )
    assert_that(
      (
        (ebcdic, windows)
        | beam.Flatten()
        | beam.combiners.Count.PerElement()
        | beam.Map(lambda kv: kv[1])
      ),
      equal_to([2, 2, 2, 2]),
      label='same lines',
    )
