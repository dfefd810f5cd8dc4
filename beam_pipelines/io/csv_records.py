"""CSV records out of line arrays: a quoted field may hold line breaks.

A legacy export quotes a description that holds a line break, and the record
goes on on the next line. Reading line by line would make two broken records of
it; ``csv_record_arrays`` joins such lines back into one record (with b'\\n'
between them), deciding where a record ends exactly as Python's csv module
does, the module the line parsers split fields with.

    for records, lines_spanned in csv_record_arrays(line_arrays(stream)):
        ...  # records[i] is at line first + i; only the last may span lines

Only lines holding a quote can open such a record, so lines without one pass
through as they are (no Python object per line). A record that spans lines
always ends its array, so the position of every record stays the line it
starts on. A quote left open for more than MAX_RECORD_LINES lines, or at the
end of the input, opens nothing: its line is a record of its own, and the line
parser says what is wrong with it.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from typing import Optional

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


def _cut(lines: pa.BinaryArray, final: bool) -> Iterator[tuple[pa.BinaryArray, int]]:
  """(records, lines they span) of ``lines``; ends with (the lines from the first record
  still open, -1) unless ``final``."""
  start = 0  # the first line not yet handed on
  for i in lines_with_quotes(lines).tolist():
    if i < start:
      continue  # inside a record already joined
    count = record_line_count(lines, i)
    if count is None and not final and len(lines) - i < MAX_RECORD_LINES:
      if i > start:
        yield lines[start:i], i - start
      yield lines[i:], -1
      return
    if count is None or count == 1:
      continue  # open to the end of the input, or too long: a line on its own
    record = b'\n'.join(lines[i : i + count].to_pylist())
    yield pa.concat_arrays([lines[start:i], pa.array([record], pa.binary())]), i - start + count
    start = i + count
  if start < len(lines):
    yield lines[start:], len(lines) - start


def csv_record_arrays(arrays: Iterator[pa.BinaryArray]) -> Iterator[tuple[pa.BinaryArray, int]]:
  """(an array of CSV records, how many lines they span) for the line arrays of one input.

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
    if held is not None:
      lines, held = pa.concat_arrays([held, lines]), None
    for records, spanned in _cut(lines, final=following is None):
      if spanned < 0:
        held = records
      else:
        yield records, spanned
    if error is not None:
      raise error
    lines = following
