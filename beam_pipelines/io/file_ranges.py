"""Byte ranges of a big uncompressed input, so that several workers read one file.

A range [start, end) owns the lines that begin inside it: the first line
that begins at or after ``start`` up to the line that holds byte ``end - 1``,
read to its end even past ``end``. Every line is thus read by exactly one
range. A gzip file cannot be entered in the middle: it stays one range.

Dead letters name their line, so each range must know the number of its
first line. ``plan_ranges`` counts the newlines before each boundary in one
sequential pass (bytes.count, a few hundred MB/s even from S3's stream is far
cheaper than parsing the same lines) and hands each range its first line
number; the ranges are then read, and parsed, in parallel.

    for r in plan_ranges(path, size, open_stream):   # FileRange(start, end, first_line)
      lines of RangeStream(open_stream(), r.start, r.end), numbered from r.first_line
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

# Splitting pays off once a range holds a few seconds of parsing (~64 MiB
# is ~280k access-log lines); smaller inputs stay one range.
RANGE_BYTES = 64 << 20
_SCAN_BYTES = 1 << 20


class FileRange(NamedTuple):
  start: int
  end: int  # exclusive; the file's size for the last range
  first_line: int  # the 1-based number of the first line that begins in the range


def is_splittable(path: str) -> bool:
  return not path.endswith('.gz')


def plan_ranges(
  path: str, size: int, open_stream: Callable[[], object], range_bytes: int = RANGE_BYTES
) -> list[FileRange]:
  """The ranges of a file of ``size`` bytes, each about ``range_bytes`` long.

  Reads the file once (``open_stream()``) to number the first line of each
  range; a file of one range is not read.
  """
  if range_bytes < 1:
    raise ValueError(f'range_bytes must be at least 1, got {range_bytes}')
  starts = list(range(0, size, range_bytes)) or [0]
  if len(starts) == 1 or not is_splittable(path):
    return [FileRange(0, size, 1)]
  # Lines beginning before start s (s > 0): the first one, and one after each b'\n' in [0, s-1).
  first_lines = [1]
  newlines, read = 0, 0
  stream = open_stream()
  try:
    for start in starts[1:]:
      while read < start - 1:
        block = stream.read(min(_SCAN_BYTES, start - 1 - read))
        if not block:
          raise EOFError(f'{path} ended at byte {read}, before its listed size {size}')
        newlines += block.count(b'\n')
        read += len(block)
      first_lines.append(2 + newlines)
  finally:
    stream.close()
  ends = starts[1:] + [size]
  return [
    FileRange(start, end, first)
    for start, end, first in zip(starts, ends, first_lines, strict=True)
  ]


class RangeStream:
  """A binary stream of the bytes of a range's lines (see the module docstring).

  ``raw`` must be seekable; it is closed with this stream.
  """

  def __init__(self, raw, start: int, end: int):
    self._raw = raw
    self._end = end
    self._position = start
    self._done = start >= end
    if start > 0 and not self._done:
      raw.seek(start - 1)
      if raw.read(1) != b'\n':  # start is inside a line: the previous range reads it
        self._skip_to_line_start()

  def _skip_to_line_start(self) -> None:
    while True:
      block = self._raw.read(_SCAN_BYTES)
      if not block:
        self._done = True
        return
      newline = block.find(b'\n')
      if newline >= 0:
        self._position += newline + 1
        self._raw.seek(self._position)
        self._done = self._position >= self._end
        return
      self._position += len(block)

  def read(self, size: int = -1) -> bytes:
    if self._done:
      return b''
    size = _SCAN_BYTES if size is None or size < 0 else size
    if self._position < self._end:
      block = self._raw.read(min(size, self._end - self._position))
      if not block:
        self._done = True
        return b''
      self._position += len(block)
      if self._position >= self._end and block.endswith(b'\n'):
        self._done = True  # byte end - 1 ends a line: nothing of the next range's
      return block
    # Past the end: the rest of the line that holds byte end - 1.
    block = self._raw.read(size)
    newline = block.find(b'\n')
    if newline >= 0 or not block:
      self._done = True
      return block[: newline + 1] if newline >= 0 else b''
    self._position += len(block)
    return block

  read1 = read

  def tell(self) -> int:
    return self._position

  def close(self) -> None:
    self._raw.close()
