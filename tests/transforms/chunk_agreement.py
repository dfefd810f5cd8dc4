"""The check the chunk parsers' tests share: parse_chunk agrees with the line parser."""

from __future__ import annotations

import random
from collections import Counter

from transforms.dead_letters import RecordError, RecordFiltered, check_size
from transforms.event_batches import from_batch, schema_of
from transforms.records import Event, LineChunk, RawRecord


def records_of(lines: list, source: str) -> list[RawRecord]:
  return [
    RawRecord(source, n, line if isinstance(line, bytes) else line.encode(), 0)
    for n, line in enumerate(lines, 1)
  ]


def mutated(rng: random.Random, lines: list, alphabet: bytes, deletes: float = 0.0) -> list:
  """Each line with up to three bytes replaced by one of ``alphabet``'s, or (that often)
  deleted: the shapes a chunk parser must tell from its plain ones."""
  out = []
  for line in lines:
    data = bytearray(line if isinstance(line, bytes) else line.encode())
    for _ in range(rng.randint(0, 3)):
      if data:
        at = rng.randrange(len(data))
        if rng.random() < deletes:
          del data[at]
        else:
          data[at] = rng.choice(alphabet)
    out.append(bytes(data))
  return out


def line_outcome(parser, record: RawRecord):
  try:
    check_size(record)
    return parser(record)
  except (RecordFiltered, RecordError) as outcome:
    return outcome


def assert_same_outcomes(parser, records: list[RawRecord], record_type: type = Event) -> set[int]:
  """Asserts the lines parse_chunk decides come out as the line parser makes them (every
  column, every filter reason) and that it decides no line the line parser rejects;
  returns the positions it left to the line parser."""
  chunk = parser.parse_chunk(LineChunk.of_records(records))
  left = {r.position for r in chunk.rest}
  assert [r.position for r in chunk.rest] == sorted(left)
  expected = [line_outcome(parser, r) for r in records if r.position not in left]
  assert not [e for e in expected if isinstance(e, RecordError)]
  assert chunk.table.schema == schema_of(record_type)
  assert sorted(from_batch(record_type, chunk.table)) == sorted(
    e for e in expected if isinstance(e, record_type)
  )
  assert len(expected) == chunk.table.num_rows + sum(chunk.filtered.values())
  reasons = Counter(e.reason for e in expected if isinstance(e, RecordFiltered))
  assert chunk.filtered == dict(reasons)
  return left
