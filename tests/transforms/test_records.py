"""LineChunk: its records, and its coder for runners that move a chunk between workers."""

import pyarrow as pa
from apache_beam import coders

from transforms.records import LineChunk, RawRecord


def test_a_chunk_gives_back_its_lines_as_numbered_records():
  records = [RawRecord('access-log:/a.log', n, b'line %d' % n, 7) for n in range(41, 45)]
  chunk = LineChunk.of_records(records)
  assert chunk.records() == records
  assert chunk.records([3, 1]) == [records[3], records[1]]
  assert chunk.records([]) == []


def test_the_registered_coder_round_trips_a_chunk():
  lines = pa.array([b'{"a": 1}', b'', b'\xff\x00 not utf-8'], pa.binary())
  chunk = LineChunk('events-jsonl:/e.jsonl', 10_001, 5, lines)
  coder = coders.registry.get_coder(LineChunk)
  decoded = coder.decode(coder.encode(chunk))
  assert decoded[:3] == chunk[:3] and decoded.lines.equals(chunk.lines)
  assert coder.is_deterministic() and coder.estimate_size(chunk) >= chunk.lines.nbytes


def test_a_chunk_of_records_that_span_lines_keeps_each_records_position():
  records = [RawRecord('orders-csv:/o.csv', n, b'r%d' % n, 7) for n in (2, 3, 5, 9)]
  chunk = LineChunk.of_records(records)
  assert chunk.line_offsets.to_pylist() == [0, 1, 3, 7]
  assert chunk.positions().tolist() == [2, 3, 5, 9]
  assert chunk.records() == records
  assert chunk.records([3, 0]) == [records[3], records[0]]
  coder = coders.registry.get_coder(LineChunk)
  decoded = coder.decode(coder.encode(chunk))
  assert decoded.records() == records
  assert coder.decode(coder.encode(chunk._replace(line_offsets=None))).line_offsets is None
