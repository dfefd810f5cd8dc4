import gzip
import io
import zlib

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.io.file_ranges import FileRange
from beam_pipelines.io.sources import (
  GZIP_EXPANSION,
  ReadLines,
  estimated_input_bytes,
  expand_inputs,
  file_ranges,
  line_arrays,
  parse_file,
  parse_source_spec,
)
from tests.conftest import beam_pipeline
from transforms.records import DEAD_LETTER_TAG


def test_source_specs():
  assert parse_source_spec('access-log=/x/*.log') == ('access-log', '/x/*.log')
  with pytest.raises(ValueError, match='unknown kind'):
    parse_source_spec('parquet=/x')
  with pytest.raises(ValueError, match='KIND=PATH_OR_GLOB'):
    parse_source_spec('/just/a/path')


def test_expand_inputs_lists_files_and_fails_on_no_match(tmp_path):
  (tmp_path / 'b.jsonl').write_bytes(b'{}\n')
  (tmp_path / 'a.jsonl').write_bytes(b'{}\n')
  files = expand_inputs([parse_source_spec(f'events-jsonl={tmp_path}/*.jsonl')])
  assert [f.path.rsplit('/', 1)[1] for f in files] == ['a.jsonl', 'b.jsonl']
  assert files[0].source == f'events-jsonl:{tmp_path}/a.jsonl'
  with pytest.raises(ValueError, match='no file matches'):
    expand_inputs([parse_source_spec(f'events-jsonl={tmp_path}/*.gz')])


def test_the_input_size_counts_a_gzip_file_as_its_lines(tmp_path):
  (tmp_path / 'a.jsonl').write_bytes(b'x' * 1000)
  (tmp_path / 'b.jsonl.gz').write_bytes(gzip.compress(b'{"event_id": "e"}\n' * 500))
  files = expand_inputs([parse_source_spec(f'events-jsonl={tmp_path}/*')])
  gzipped = (tmp_path / 'b.jsonl.gz').stat().st_size
  assert estimated_input_bytes(files) == 1000 + GZIP_EXPANSION * gzipped
  assert estimated_input_bytes([]) == 0


def test_lines_of_plain_and_gzip_files_with_positions(tmp_path):
  (tmp_path / 'a.jsonl').write_bytes(b'one\r\ntwo\nthree')
  with gzip.open(tmp_path / 'b.jsonl.gz', 'wb') as f:
    f.write(b'four\n\nsix\n')
  files = expand_inputs([parse_source_spec(f'events-jsonl={tmp_path}/*')])
  with beam_pipeline() as p:
    read = p | ReadLines(files)
    assert_that(
      read['records'] | beam.Map(lambda r: (r.source.rsplit('/', 1)[1], r.position, r.payload)),
      equal_to(
        [
          ('a.jsonl', 1, b'one'),
          ('a.jsonl', 2, b'two'),
          ('a.jsonl', 3, b'three'),
          ('b.jsonl.gz', 1, b'four'),
          ('b.jsonl.gz', 2, b''),
          ('b.jsonl.gz', 3, b'six'),
        ]
      ),
    )


def test_a_truncated_gzip_keeps_what_was_read_and_reports_the_rest(tmp_path):
  data = gzip.compress(b''.join(b'line %d\n' % n for n in range(5000)))
  (tmp_path / 'cut.jsonl.gz').write_bytes(data[: len(data) // 2])
  files = expand_inputs([parse_source_spec(f'events-jsonl={tmp_path}/cut.jsonl.gz')])
  with beam_pipeline() as p:
    read = p | ReadLines(files)
    assert_that(
      read['records'] | beam.combiners.Count.Globally() | beam.Map(lambda n: 0 < n < 5000),
      equal_to([True]),
      label='some lines',
    )
    assert_that(
      read[DEAD_LETTER_TAG] | beam.Map(lambda d: (d.reason, d.step)),
      equal_to([('unreadable_input', 'read_lines')]),
      label='dead letter',
    )


def test_a_truncated_fixed_length_export_reports_the_record_it_stopped_after(tmp_path):
  """Without line ends a position counts records, and every record before the failure
  is read, also those of an array not yet full."""
  data = gzip.compress(b''.join(b'R%07d' % n for n in range(20000)))
  cut = data[: len(data) // 2]
  (tmp_path / 'cut.txt.gz').write_bytes(cut)
  readable = len(zlib.decompressobj(wbits=31).decompress(cut)) // 8
  assert 0 < readable % 10_000  # the failure comes inside an array of records
  files = expand_inputs([parse_source_spec(f'orders-fixed={tmp_path}/cut.txt.gz')])
  with beam_pipeline() as p:
    read = p | ReadLines(files, record_length=8)
    assert_that(
      read['records'] | beam.combiners.Count.Globally(), equal_to([readable]), label='records'
    )
    assert_that(
      read[DEAD_LETTER_TAG]
      | beam.Map(
        lambda d: (
          int(d.position) > 1,
          d.detail.startswith(f'input unreadable after record {int(d.position) - 1}: '),
        )
      ),
      equal_to([(True, True)]),
    )


class _Blocks(io.RawIOBase):
  """A stream whose reads return blocks of the given sizes, as a gzip or S3 stream may."""

  def __init__(self, data: bytes, sizes: list[int]):
    self._data, self._sizes = data, sizes

  def readable(self):
    return True

  def read1(self, n=-1):
    size = self._sizes.pop(0) if self._sizes else len(self._data)
    block, self._data = self._data[:size], self._data[size:]
    return block


@settings(max_examples=300, deadline=None)
@given(
  st.lists(st.sampled_from([b'a', b'bc', b'\r', b'\n', b'\r\n']), max_size=60).map(b''.join),
  st.lists(st.integers(1, 7), max_size=30),
  st.integers(1, 20),
)
def test_line_arrays_cut_lines_as_iterating_the_file(data, sizes, chunk_bytes):
  expected = [line.rstrip(b'\r\n') for line in io.BytesIO(data)]
  arrays = list(line_arrays(_Blocks(data, sizes), chunk_bytes))
  assert [line for lines in arrays for line in lines.to_pylist()] == expected
  assert all(len(lines) for lines in arrays)


def test_line_arrays_yield_the_lines_before_a_failed_read():
  class Failing(_Blocks):
    def read1(self, n=-1):
      if not self._data:
        raise EOFError('cut')
      return super().read1(n)

  arrays = line_arrays(Failing(b'one\ntwo\nthr', [4, 4, 3]), chunk_bytes=100)
  assert next(arrays).to_pylist() == [b'one', b'two']
  with pytest.raises(EOFError, match='cut'):
    next(arrays)


def test_chunks_carry_source_position_and_time(tmp_path):
  (tmp_path / 'a.jsonl').write_bytes(b''.join(b'line %d\n' % n for n in range(1, 1001)))
  files = expand_inputs([parse_source_spec(f'events-jsonl={tmp_path}/a.jsonl')])
  with beam_pipeline() as p:
    read = p | ReadLines(files, chunk_bytes=1000)
    assert_that(
      read['records']
      | beam.FlatMap(lambda chunk: [(r.position, r.payload) for r in chunk.records()]),
      equal_to([(n, b'line %d' % n) for n in range(1, 1001)]),
    )


def test_csv_records_span_lines_and_a_big_csv_is_not_cut_in_ranges(tmp_path):
  """A quoted line break joins lines (csv_records.py); a range could start inside a record,
  so a CSV input above range_bytes is still read whole, while a log that size is cut."""
  record = b'1,"two\nlines",x\n'
  (tmp_path / 'catalog.csv').write_bytes(record * 50)
  (tmp_path / 'access.log').write_bytes(b'a line\n' * 200)
  files = expand_inputs(
    [
      parse_source_spec(f'catalog-csv={tmp_path}/catalog.csv'),
      parse_source_spec(f'access-log={tmp_path}/access.log'),
    ]
  )
  log, catalog = files
  assert file_ranges(catalog, 100) == [(catalog, FileRange(0, catalog.size, 1))]
  assert len(file_ranges(log, 100)) > 1
  with beam_pipeline() as p:
    read = p | ReadLines(files, range_bytes=100)
    assert_that(
      read['records'] | beam.Map(lambda r: (r.source.split(':')[0], r.position, r.payload)),
      equal_to(
        [('catalog-csv', 2 * n + 1, b'1,"two\nlines",x') for n in range(50)]
        + [('access-log', n, b'a line') for n in range(1, 201)]
      ),
    )


def test_parse_file_reads_csv_records(tmp_path):
  (tmp_path / 'catalog.csv').write_bytes(b'id,t\n1,"a\nb"\n2,c\n')
  [file] = expand_inputs([parse_source_spec(f'catalog-csv={tmp_path}/catalog.csv')])
  got = [(record.position, outcome) for record, outcome in parse_file(file, lambda r: r.payload)]
  assert got == [(1, b'id,t'), (2, b'1,"a\nb"'), (4, b'2,c')]
