"""Fields at fixed positions of ASCII string columns, read from their bytes with numpy.

Texts a regex has already shaped (times, dates) have each field at a known
offset from their start; reading the digits from the column's data buffer
costs one numpy pass per digit, where slicing and casting each field with
pyarrow cost a pass and a new array per field (measured on the time parsers).

    data, start = string_bytes(texts)
    year = number_at(data, start, 4)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def string_bytes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
  """(the column's data bytes, where each text starts in them): positions for number_at."""
  offsets = np.frombuffer(texts.buffers()[1], np.int32)[
    texts.offset : texts.offset + len(texts) + 1
  ]
  data_buffer = texts.buffers()[2]
  data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
  return data, offsets.astype(np.int64)


def number_at(data: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
  """The decimal number of the ``width`` digits at each position (digits not checked)."""
  value = np.zeros(len(at), np.int64)
  for k in range(width):
    value = value * 10 + (data[at + k].astype(np.int64) - ord('0'))
  return value


def days_from_civil(
  year: np.ndarray, month: np.ndarray, day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """(days since 1970-01-01, whether year >= 1 and month and day make a real date)."""
  first_of_month = ((year - 1970) * 12 + np.clip(month, 1, 12) - 1).astype('datetime64[M]')
  first_day = first_of_month.astype('datetime64[D]')
  month_days = ((first_of_month + 1).astype('datetime64[D]') - first_day).astype(np.int64)
  real = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
  return first_day.astype(np.int64) + day - 1, real
