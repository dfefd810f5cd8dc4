"""The order chunk parsers give each record the record parser's outcome.

Records of every shape (the fixture, a generated export, hand-made edge cases,
random mutations) go through parse_chunk; the records it decides must come out
exactly as OrdersCsvParser (FixedWidthOrdersParser) makes them (every column), and the records it leaves
must be those the column rules do not cover.
"""

from __future__ import annotations

import os
import pickle
import random
from typing import Optional

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from tests.conftest import NOW_US, TEST_SALT, fixture_path
from tests.transforms import chunk_agreement
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.parse.fixed_width import Layout, layout_from_dict, load_layout
from transforms.parse.order_chunks import FixedWidthOrdersChunkParser, OrdersCsvChunkParser
from transforms.parse.parse_fixed_orders import REQUIRED_COLUMNS
from transforms.records import LineChunk, OrderLine, RawRecord

PARSER = OrdersCsvChunkParser(Pseudonymizer(TEST_SALT), 'Europe/London', 'GBP', NOW_US)

# Plain records: each one is for the column path (asserted below).
PLAIN = [
  '536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom',
  '536365,POST,POSTAGE,1,12/1/2010 8:26,18.00,17850.0,United Kingdom',
  'C536379,D,Discount,-1,12/1/2010 9:41,27.50,14527.0,United Kingdom',
  ' c536380 , 22139 ,  ,-2, 2011-07-01 08:26:00 ,4.250, a@b.example ,  ',
  '536381,22139,TEA SET,+3,7/1/2011 8:26:30,1e1,,EIRE',
  '536382,m,Manual,1,12/1/2010 8:26,-5.00,17850,Narnia',
  '536383,,no code,1_000,12/1/2010 8:26,0,17850.0,de',
  '536384,22139,"A, ""quoted"" one",1,12/1/2010 8:26,1,,"Korea, Republic of"',
  '"536385","POST"," ",1,"12/1/2010 8:26","18.00","","United Kingdom"',
]
# Records the line parser must decide: its filters, its dead letters, quotes, bytes.
OTHER = [
  'InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country',
  ' invoiceno ,stockcode,description,quantity,invoicedate,unitprice,customerid,country',
  '536414,22139,,-56,12/1/2010 11:52,0,,United Kingdom',
  '536415,22139,BAD LINE,-5,12/1/2010 11:52,1.5,,United Kingdom',
  'C536419,22139,RETRO TEA SET,3,12/1/2010 8:26,4.25,17850.0,United Kingdom',
  '536420,22139,Bad price,1,12/1/2010 8:26,-11.06,,United Kingdom',
  '536417,22139,RETRO TEA SET,6,2/30/2010 8:26,4.25,17850.0,United Kingdom',
  '536418,22139,RETRO TEA SET,x,12/1/2010 8:26,abc,17850.0,United Kingdom',
  '536421,22139,Too many,1000001,12/1/2010 8:26,1,,United Kingdom',
  '536422,22139,Infinite,1,12/1/2010 8:26,Infinity,,United Kingdom',
  '536423,22139,Old,1,12/1/1990 8:26,1,,United Kingdom',
  ',22139,No invoice,1,12/1/2010 8:26,1,,United Kingdom',
  'C,22139,Only C,-1,12/1/2010 8:26,1,,United Kingdom',
  '536424,22139,12" RULER,1,12/1/2010 8:26,1,,United Kingdom',
  '536424,22139,"A, quoted"x,1,12/1/2010 8:26,1,,United Kingdom',
  '536424,22139, "A, quoted",1,12/1/2010 8:26,1,,United Kingdom',
  '536425,22139,"two\nlines",1,12/1/2010 8:26,1,,United Kingdom',
  '536426,22139,caf\u00e9,1,12/1/2010 8:26,1,,France',
  '536427,22139,a column short,1,12/1/2010 8:26,1,United Kingdom',
  '536428,22139,a column more,1,12/1/2010 8:26,1,,United Kingdom,x',
  '536429,22139,tab\t,1,12/1/2010 8:26,1,,United Kingdom',
  '',
  '   ',
]


def records_of(lines: list) -> list[RawRecord]:
  return chunk_agreement.records_of(lines, 'orders-csv:test')


def assert_same_outcomes(records: list[RawRecord]) -> set[int]:
  return chunk_agreement.assert_same_outcomes(PARSER, records, OrderLine)


def test_plain_records_take_the_column_path_with_the_line_parsers_outcome():
  records = records_of(PLAIN)
  assert assert_same_outcomes(records) == set()
  table = PARSER.parse_chunk(LineChunk.of_records(records)).table
  assert table.column('line_type').to_pylist() == [
    'product',
    'service',
    'adjustment',
    'product',
    'product',
    'adjustment',
    'product',
    'product',
    'service',
  ]
  assert table.column('position').to_pylist() == list(range(1, len(PLAIN) + 1))
  assert table.column('description').to_pylist()[-2:] == ['A, "quoted" one', None]


def test_other_records_are_left_to_the_line_parser():
  records = records_of(OTHER + PLAIN)
  assert assert_same_outcomes(records) == set(range(1, len(OTHER) + 1))


def test_fixture_and_generated_exports(tmp_path):
  generate(GeneratorConfig(output_dir=str(tmp_path), events=3000, days=2))
  with open(tmp_path / 'orders.csv', 'rb') as f:
    generated = [line.rstrip(b'\r\n') for line in f]
  with open(fixture_path('orders.csv'), 'rb') as f:
    fixture = [line.rstrip(b'\r\n') for line in f]
  records = records_of(fixture + generated)
  left = assert_same_outcomes(records)
  # The generated export is mostly plain: the column path is the common one.
  assert len(left) < len(records) / 10


def test_an_empty_chunk():
  chunk = PARSER.parse_chunk(LineChunk.of_records(records_of([''])))
  assert chunk.table.num_rows == 0 and len(chunk.rest) == 1


@settings(max_examples=80, deadline=None)
@given(st.randoms(use_true_random=False))
def test_mutated_records(rng: random.Random):
  alphabet = b' ,"-+./:_\t\n\xe9CcaZ059'
  assert_same_outcomes(records_of(chunk_agreement.mutated(rng, PLAIN + OTHER, alphabet)))


def test_a_pickled_parser_keeps_its_chunk_path():
  """Worker processes get the parser pickled; a plain OrdersCsvParser would parse every
  record alone (right, but a record at a time)."""
  copy = pickle.loads(pickle.dumps(PARSER))
  assert type(copy) is OrdersCsvChunkParser
  records = records_of(PLAIN)
  assert copy.parse_chunk(LineChunk.of_records(records)).table.num_rows == len(PLAIN)


# Fixed-width exports (parse_fixed_orders.py): the samples in both code pages, a generated
# export, mutated records, and layouts with an extra column or another type.
SAMPLES = os.path.join(os.path.dirname(__file__), '..', '..', 'samples', 'orders-fixed')
LAYOUTS = {
  'cp1252': load_layout(os.path.join(SAMPLES, 'layout.yaml'), REQUIRED_COLUMNS),
  'cp037': load_layout(os.path.join(SAMPLES, 'layout-ebcdic.yaml'), REQUIRED_COLUMNS),
}


def fixed_parser(layout: Layout, encoding: Optional[str] = None) -> FixedWidthOrdersChunkParser:
  return FixedWidthOrdersChunkParser(
    layout, encoding or layout.encoding, Pseudonymizer(TEST_SALT), 'Europe/London', 'GBP', NOW_US
  )


def sample_records(encoding: str) -> list[bytes]:
  if encoding == 'cp1252':
    with open(os.path.join(SAMPLES, 'orders.txt'), 'rb') as f:
      return f.read().split(b'\n')  # the b'\r's kept: the record parser strips them
  with open(os.path.join(SAMPLES, 'orders.cp037'), 'rb') as f:
    data = f.read()
  length = LAYOUTS['cp037'].record_length
  return [data[i : i + length] for i in range(0, len(data), length)]


def fixed_records_of(lines: list[bytes]) -> list[RawRecord]:
  return chunk_agreement.records_of(lines, 'orders-fixed:test')


@pytest.mark.parametrize('encoding', ['cp1252', 'cp037'])
def test_fixed_width_samples_take_the_column_path_where_they_can(encoding):
  records = fixed_records_of(sample_records(encoding))
  parser = fixed_parser(LAYOUTS[encoding])
  left = chunk_agreement.assert_same_outcomes(parser, records, OrderLine)
  # Four good records; a bad quantity, a bad date, a short record (and the empty last line).
  assert parser.parse_chunk(LineChunk.of_records(records)).table.num_rows == 4
  assert len(left) == len(records) - 4


def test_a_generated_fixed_width_export(tmp_path):
  generate(GeneratorConfig(output_dir=str(tmp_path), events=3000, days=2))
  with open(tmp_path / 'orders-fixed.txt', 'rb') as f:
    lines = [line.rstrip(b'\n') for line in f]
  records = fixed_records_of(lines)
  left = chunk_agreement.assert_same_outcomes(fixed_parser(LAYOUTS['cp1252']), records, OrderLine)
  assert len(left) < len(records) / 10


def test_an_extra_column_must_convert_and_other_types_leave_every_record():
  spec = yaml.safe_load(open(os.path.join(SAMPLES, 'layout.yaml'), encoding='utf-8'))
  spec['record_length'] = 104
  spec['columns'].append({'name': 'branch', 'start': 101, 'length': 4, 'type': 'int'})
  lines = [line.rstrip(b'\r') for line in sample_records('cp1252') if line.strip()]
  records = fixed_records_of([line + b'0042' for line in lines] + [lines[0] + b'00x2'])
  parser = fixed_parser(layout_from_dict(spec, REQUIRED_COLUMNS))
  left = chunk_agreement.assert_same_outcomes(parser, records, OrderLine)
  assert len(records) in left  # the branch that is no number
  spec['columns'][3]['type'] = 'decimal'  # quantity
  parser = fixed_parser(layout_from_dict(spec, REQUIRED_COLUMNS))
  assert parser.parse_chunk(LineChunk.of_records(records)).table.num_rows == 0


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(['cp1252', 'cp037']))
def test_mutated_fixed_width_records(rng: random.Random, encoding: str):
  alphabet = b' -+0129Cc\r\t\x81\xe9\x40\xf0\xc3'
  lines = chunk_agreement.mutated(rng, sample_records(encoding), alphabet, deletes=0.1)
  parser = fixed_parser(LAYOUTS[encoding])
  chunk_agreement.assert_same_outcomes(parser, fixed_records_of(lines), OrderLine)


def test_a_byte_the_code_page_lacks_in_any_column_leaves_the_record():
  layout = LAYOUTS['cp1252']
  good = sample_records('cp1252')[0].rstrip(b'\r')
  lines = [good]
  for column in layout.columns:
    broken = bytearray(good)
    broken[column.start] = 0x81  # not in Windows-1252
    lines.append(bytes(broken))
  records = fixed_records_of(lines)
  left = chunk_agreement.assert_same_outcomes(fixed_parser(layout), records, OrderLine)
  assert left == set(range(2, len(lines) + 1))
