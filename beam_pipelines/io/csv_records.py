"""CSV records out of line arrays: a quoted field may hold line breaks.

A legacy export quotes a description that holds a line break, and the record
goes on on the next line. Reading line by line would make two broken records of
it; ``csv_record_arrays`` joins such lines back into one record (with b'\\n'
between them), deciding where a record ends exactly as Python's csv module
does, the module the line parsers split fields with.

    for records, lines_spanned, line_offsets in csv_record_arrays(line_arrays(stream)):
        ...  # records[i] is at line first + line_offsets[i] (first + i if None)

Only lines holding a quote can open such a record, so lines without one pass
through as they are (no Python object per line). The records of an array keep
the line each starts on (``line_offsets``), so an export whose records mostly
span lines still comes in arrays of many records. A quote left open for more
than MAX_RECORD_LINES lines, or at the end of the input, opens nothing: its
line is a record of its own, and the line parser says what is wrong with it.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from typing import NamedTuple, Optional

import numpy as np
import pyarrow as pa

# How far a quoted field may run on. Legacy descriptions with line breaks hold
# a few; a stray quote must not swallow the rest of the file.
MAX_RECORD_LINES = 100
_QUOTE = ord('"')


def lines_with_quotes(lines: pa.BinaryArray) -> np.ndarray:
  """The indices of the lines that hold a double quote, ascending."""
  if not len(lines) or lines.buffers()[2] is None:
    return np.zeros(0, np.int64)
  offsets = np.frombuffer(lines.buffers()[1], np.int32)[
    lines.offset : lines.offset + len(lines) + 1
  ]
  data = np.frombuffer(lines.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
  quotes = np.flatnonzero(data == _QUOTE) + offsets[0]
  return np.unique(np.searchsorted(offsets, quotes, side='right') - 1)


def record_line_count(lines: pa.BinaryArray, start: int) -> Optional[int]:
  """How many lines from ``start`` the CSV record starting there spans, up to
  MAX_RECORD_LINES; None when its quoted field is still open at the array's end."""
  end = min(len(lines), start + MAX_RECORD_LINES)
  # Bytes as Latin-1: one character each, and the quote, comma and line break
  # are the same bytes in UTF-8 and in every legacy code page of an export.
  texts = (lines[i].as_py().decode('latin-1') + '\n' for i in range(start, end))
  # A line after the available ones: the record swallows it only if it is still open.
  reader = csv.reader(itertools.chain(texts, ['end\n']))
  try:
    next(reader)
  except csv.Error:
    return 1  # a NUL byte, say: the line parser gives the dead letter
  if reader.line_num <= end - start:
    return reader.line_num
  return None


class RecordArray(NamedTuple):
  """Records of one input, as the readers hand them on."""

  records: pa.BinaryArray
  lines: int  # how many lines of the input they span
  # The line of each record, counted from the first record's (0), when one of them spans
  # lines; None when each record is one line, so that record i is at line i.
  line_offsets: Optional[pa.Int64Array] = None


def _cut(lines: pa.BinaryArray, final: bool) -> tuple[Optional[RecordArray], pa.BinaryArray]:
  """(the records of ``lines``, or None if there are none; the lines from the first record
  still open at the end, empty when ``final``)."""
  pieces: list[pa.BinaryArray] = []  # runs of one-line records, and joined records
  offsets: list[np.ndarray] = []  # each piece's records' lines
  joined = False
  start = 0  # the first line not yet handed on
  held = lines[len(lines) :]
  for i in lines_with_quotes(lines).tolist():
    if i < start:
      continue  # inside a record already joined
    count = record_line_count(lines, i)
    if count is None and not final and len(lines) - i < MAX_RECORD_LINES:
      held = lines[i:]  # the next array may close it
      break
    if count is None or count == 1:
      continue  # open to the end of the input, or too long: a line on its own
    pieces += [
      lines[start:i],
      pa.array([b'\n'.join(lines[i : i + count].to_pylist())], pa.binary()),
    ]
    offsets += [np.arange(start, i), np.array([i])]
    joined = True
    start = i + count
  end = len(lines) - len(held)
  pieces.append(lines[start:end])
  offsets.append(np.arange(start, end))
  records = pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]
  if not len(records):
    return None, held
  line_offsets = pa.array(np.concatenate(offsets), pa.int64()) if joined else None
  return RecordArray(records, end, line_offsets), held


def csv_record_arrays(arrays: Iterator[pa.BinaryArray]) -> Iterator[RecordArray]:
  """The CSV records of the line arrays of one input, an array at a time.

  An array is cut once the next one is known (or known not to come). When reading the
  next fails, the records before it are still handed on, then the error is raised.
  """
  held: Optional[pa.BinaryArray] = None  # an open record's lines, waiting for the next array
  arrays = iter(arrays)
  lines = next(arrays, None)
  while lines is not None:
    error: Optional[Exception] = None
    try:
      following = next(arrays, None)
    except Exception as e:  # the reader's own: a corrupt gzip, say
      following, error = None, e
    if held is not None and len(held):
      lines = pa.concat_arrays([held, lines])
    records, held = _cut(lines, final=following is None)
    if records is not None:
      yield records
    if error is not None:
      raise error
    lines = following
