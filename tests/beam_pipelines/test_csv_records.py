"""CSV records with line breaks in quoted fields, joined back as Python's csv module reads them."""

from __future__ import annotations

import csv
import gzip
import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.io.csv_records import MAX_RECORD_LINES, csv_record_arrays, lines_with_quotes
from beam_pipelines.io.sources import line_arrays
from transforms.records import LineChunk


def numbered_records(data: bytes, chunk_bytes: int) -> list[tuple[int, bytes]]:
  """(position, record) as the reader hands them on: positions count lines."""
  out, position = [], 1
  for array in csv_record_arrays(line_arrays(io.BytesIO(data), chunk_bytes)):
    chunk = LineChunk('orders-csv:test', position, 0, array.records, array.line_offsets)
    out.extend((record.position, record.payload) for record in chunk.records())
    position += array.lines
  return out


def reference(text: str) -> list[tuple[int, list[str]]]:
  """(first line, fields) of each record, read by the csv module over the whole text."""
  reader = csv.reader(io.StringIO(text, newline=''))
  out, line = [], 1
  for row in reader:
    out.append((line, row))
    line = reader.line_num + 1
  return out


FIELD = st.text(alphabet='ab ,"\n\u00e9', max_size=8)


@settings(max_examples=200, deadline=None)
@given(
  rows=st.lists(st.lists(FIELD, min_size=1, max_size=4), min_size=1, max_size=30),
  chunk_bytes=st.integers(1, 64),
)
def test_records_and_positions_are_the_csv_modules(rows, chunk_bytes):
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator='\n').writerows(rows)
  text = buffer.getvalue()
  got = numbered_records(text.encode(), chunk_bytes)
  expected = [(line, fields) for line, fields in reference(text)]
  assert [(p, next(csv.reader([r.decode()]))) for p, r in got] == expected


def test_a_quote_inside_a_field_opens_nothing():
  data = b'1,12" ruler,3\n2,"a, b",4\n3,x,5\n'
  assert numbered_records(data, 1 << 20) == [
    (1, b'1,12" ruler,3'),
    (2, b'2,"a, b",4'),
    (3, b'3,x,5'),
  ]


def test_a_line_break_in_a_quoted_field_joins_the_lines():
  data = b'id,text\r\n1,"two\r\nlines"\r\n2,plain\r\n'
  assert numbered_records(data, 1 << 20) == [
    (1, b'id,text'),
    (2, b'1,"two\nlines"'),
    (4, b'2,plain'),
  ]


def test_records_that_span_lines_share_an_array():
  """An export whose every description has a line break comes in big arrays, not one
  array per record, each record at the line it starts on."""
  data = b''.join(b'%d,"first\nsecond",x\n' % n for n in range(5000))
  arrays = list(csv_record_arrays(line_arrays(io.BytesIO(data), 1 << 16)))
  assert sum(len(array.records) for array in arrays) == 5000
  assert len(arrays) < 5000 // 100
  assert numbered_records(data, 1 << 16)[-2:] == [
    (9997, b'4998,"first\nsecond",x'),
    (9999, b'4999,"first\nsecond",x'),
  ]


def test_a_quote_open_at_the_end_or_too_long_leaves_each_line_alone():
  assert numbered_records(b'1,x\n2,"open\n3,y', 1 << 20) == [
    (1, b'1,x'),
    (2, b'2,"open'),
    (3, b'3,y'),
  ]
  lines = [b'1,"open'] + [b'more'] * MAX_RECORD_LINES + [b'closed"']
  got = numbered_records(b'\n'.join(lines), 64)
  assert got == list(enumerate(lines, 1))


def test_records_before_a_failed_read_are_handed_on():
  rng = random.Random(3)
  records = [
    f'{n},"{rng.getrandbits(64):x}\n{rng.getrandbits(64):x}"'.encode() for n in range(4000)
  ]
  broken = gzip.compress(b'\n'.join(records) + b'\n')[: -len(records) * 8]
  stream = gzip.GzipFile(fileobj=io.BytesIO(broken))
  got = []
  with pytest.raises(EOFError):
    for array in csv_record_arrays(line_arrays(stream, 1024)):
      got.extend(array.records.to_pylist())
  # Every record read before the failure, each whole, the last perhaps as its first line.
  assert len(got) > 1000
  assert got[:-1] == records[: len(got) - 1]


def test_lines_with_quotes_of_a_sliced_array():
  import pyarrow as pa

  lines = pa.array([b'"', b'', b'a', b'b"c', b'"'], pa.binary())
  assert lines_with_quotes(lines).tolist() == [0, 3, 4]
  assert lines_with_quotes(lines[1:4]).tolist() == [2]
  assert lines_with_quotes(pa.array([b''], pa.binary())).tolist() == []
