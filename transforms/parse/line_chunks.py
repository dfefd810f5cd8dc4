"""What the chunk parsers share: their result, and which lines may take the column path.

A chunk parser (``parse_chunk(chunk)``, a LineChunk of one source) parses the
lines it can as Arrow columns and leaves the rest to its line parser, which
gives each a dead letter with every reason; ParseChunks (parse_line_chunks.py) runs
both. Lines with bytes a column rule would have to special-case go the line
parser's way from the start.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from transforms.dead_letters import MAX_RECORD_BYTES
from transforms.records import RawRecord


class ParsedChunk(NamedTuple):
  table: pa.Table  # the parsed records, of schema_of(the parser's record type)
  filtered: dict[str, int]  # reason -> lines deliberately left out
  rest: list[RawRecord]  # lines for the line parser


def plain_lines(payloads: pa.BinaryArray) -> np.ndarray:
  """Which lines hold only printable ASCII other than a backslash, and are not blank."""
  offsets = np.frombuffer(payloads.buffers()[1], np.int32)[
    payloads.offset : payloads.offset + len(payloads) + 1
  ]
  data = np.frombuffer(payloads.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
  unusual = np.flatnonzero((data < 0x20) | (data >= 0x7F) | (data == ord('\\')))
  plain = np.ones(len(payloads), bool)
  plain[np.searchsorted(offsets, unusual + offsets[0], side='right') - 1] = False
  lengths = np.diff(offsets)
  return plain & (lengths > 0) & (lengths <= MAX_RECORD_BYTES)


def ascii_text(payloads: pa.BinaryArray, plain: np.ndarray) -> pa.StringArray:
  """The plain lines (plain_lines, and whatever a parser asks more) as text.

  Printable ASCII is UTF-8, so this is a view, not a checked cast. A parser's own
  pattern runs on the bytes of every line before: one filter after it copies less
  than a take of the plain lines before it and another after (measured).
  """
  if plain.all():
    return payloads.view(pa.string())
  return payloads.filter(pa.array(plain)).view(pa.string())
