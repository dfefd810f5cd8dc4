"""One CSV line of a legacy export to its fields, with the checks every CSV export needs.

fields = csv_fields(record, ('product_id', 'title', ...))
"""

from __future__ import annotations

import csv

from transforms.dead_letters import RecordError, RecordFiltered
from transforms.records import RawRecord


def decode_legacy(payload: bytes) -> str:
  """UTF-8, else Windows-1252: what legacy exports are written in."""
  try:
    return payload.decode('utf-8')
  except UnicodeDecodeError:
    return payload.decode('cp1252', errors='replace')


def csv_fields(record: RawRecord, columns: tuple[str, ...]) -> list[str]:
  """The line's fields; filters blank and header lines, rejects malformed ones."""
  line = decode_legacy(record.payload)
  if not line.strip():
    raise RecordFiltered('blank_line')
  try:
    fields = next(csv.reader([line]))
  except csv.Error as e:
    raise RecordError.single('malformed_csv', f'line is not CSV: {e}') from None
  if [f.strip().lower() for f in fields] == [c.lower() for c in columns]:
    raise RecordFiltered('header')
  if len(fields) != len(columns):
    raise RecordError.single(
      'wrong_column_count', f'{len(fields)} columns, expected {len(columns)} ({",".join(columns)})'
    )
  return fields
