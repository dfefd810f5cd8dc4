"""Byte ranges of a file: every line read once, by the range it begins in, with its number."""

import io

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.io.file_ranges import FileRange, RangeStream, plan_ranges
from beam_pipelines.io.sources import ReadLines, expand_inputs, line_arrays, parse_source_spec
from tests.conftest import beam_pipeline


def numbered_lines(data: bytes, range_bytes: int) -> list[tuple[int, bytes]]:
  """(line number, line) of every range of ``data``, in range order, as the reader reads them."""
  ranges = plan_ranges('f.log', len(data), lambda: io.BytesIO(data), range_bytes)
  assert ranges[0].start == 0 and ranges[-1].end == len(data)
  assert all(a.end == b.start for a, b in zip(ranges, ranges[1:], strict=False))
  read = []
  for r in ranges:
    stream = RangeStream(io.BytesIO(data), r.start, r.end) if len(ranges) > 1 else io.BytesIO(data)
    lines = [line for array in line_arrays(stream, 5) for line in array.to_pylist()]
    read.extend(enumerate(lines, r.first_line))
  return read


@settings(max_examples=400, deadline=None)
@given(
  st.lists(st.sampled_from([b'a', b'bcd', b'\r', b'\n', b'\r\n', b'\n\n']), max_size=80).map(
    b''.join
  ),
  st.integers(1, 30),
)
def test_ranges_read_every_line_once_with_its_number(data, range_bytes):
  expected = list(enumerate((line.rstrip(b'\r\n') for line in io.BytesIO(data)), 1))
  assert numbered_lines(data, range_bytes) == expected


def test_a_range_inside_one_long_line_reads_nothing():
  data = b'short\n' + b'x' * 100 + b'\nend\n'
  ranges = plan_ranges('f.log', len(data), lambda: io.BytesIO(data), 10)
  inside = [r for r in ranges if 20 <= r.start and r.end <= 100]
  assert inside and all(RangeStream(io.BytesIO(data), r.start, r.end).read() == b'' for r in inside)
  assert numbered_lines(data, 10) == [(1, b'short'), (2, b'x' * 100), (3, b'end')]


def test_gzip_and_small_files_are_one_range():
  never_opened = lambda: pytest.fail('a one-range file is not scanned')  # noqa: E731
  assert plan_ranges('f.jsonl.gz', 1000, never_opened, 10) == [FileRange(0, 1000, 1)]
  assert plan_ranges('f.log', 1000, never_opened, 1000) == [FileRange(0, 1000, 1)]
  assert plan_ranges('empty.log', 0, never_opened, 10) == [FileRange(0, 0, 1)]
  with pytest.raises(ValueError, match='range_bytes'):
    plan_ranges('f.log', 10, never_opened, 0)


def test_a_file_shorter_than_listed_fails_the_plan():
  with pytest.raises(EOFError, match='listed size'):
    plan_ranges('f.log', 100, lambda: io.BytesIO(b'a\nb\n'), 10)


def test_read_lines_over_ranges_gives_each_line_once_with_its_number(tmp_path):
  lines = [b'line %d %s' % (n, b'x' * (n % 17)) for n in range(1, 2001)]
  (tmp_path / 'a.log').write_bytes(b'\r\n'.join(lines) + b'\r\n')
  files = expand_inputs([parse_source_spec(f'access-log={tmp_path}/a.log')])
  with beam_pipeline() as p:
    for label, chunked in (('records', None), ('chunks', 700)):
      read = p | f'Read {label}' >> ReadLines(files, chunk_bytes=chunked, range_bytes=1000)
      records = read['records']
      if chunked:
        records = records | f'Records {label}' >> beam.FlatMap(lambda chunk: chunk.records())
      assert_that(
        records | f'Numbered {label}' >> beam.Map(lambda r: (r.position, r.payload)),
        equal_to(list(enumerate(lines, 1))),
        label=f'every line once, {label}',
      )
