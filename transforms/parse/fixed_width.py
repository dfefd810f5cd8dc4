"""Fixed-width record layouts: a YAML description, and cutting records by it.

A layout names each column with its 1-based start, length, type and, for
numbers, implied decimals; dates have a format with two-digit years resolved
by a documented pivot. Example (samples/orders-fixed/layout.yaml)::

    encoding: cp1252        # cp037 for EBCDIC exports
    record_length: 100
    newline: true           # false: records back to back, no separator
    year_pivot: 70          # YY < 70 -> 20YY, YY >= 70 -> 19YY
    columns:
      - {name: quantity, start: 56, length: 6, type: int}
      - {name: unit_price, start: 72, length: 9, type: decimal, decimals: 2}
      - {name: invoice_date, start: 62, length: 10, type: date, format: YYMMDDHHMI}

Types: ``text`` (trimmed), ``int`` (optional leading sign), ``decimal``
(digits with ``decimals`` implied places, optional leading sign) and ``date``
(formats made of YYYY, YY, MM, DD, HH, MI, SS; MI is minutes).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from decimal import Decimal
from typing import Any, NamedTuple

import yaml

TYPES = ('text', 'int', 'decimal', 'date')
_DATE_PARTS = re.compile(r'YYYY|YY|MM|DD|HH|MI|SS')
_SIGNED_DIGITS = re.compile(r'[+-]?\d+')


class Column(NamedTuple):
  name: str
  start: int  # 0-based offset
  length: int
  type: str
  decimals: int = 0
  date_format: str = ''


class Layout(NamedTuple):
  columns: tuple[Column, ...]
  record_length: int
  encoding: str
  newline: bool
  year_pivot: int


class ColumnError(ValueError):
  def __init__(self, column: str, code: str, message: str):
    super().__init__(f'column {column}: {message}')
    self.column = column
    self.code = code


def load_layout(path: str, required: tuple[str, ...] = ()) -> Layout:
  """Reads and checks a layout file; ValueError says what is wrong with it."""
  try:
    with open(path, encoding='utf-8') as f:
      spec = yaml.safe_load(f)
  except OSError as e:
    raise ValueError(f'cannot read layout {path}: {e.strerror}') from e
  except yaml.YAMLError as e:
    raise ValueError(f'layout {path} is not valid YAML: {e}') from e
  return layout_from_dict(spec, required, where=f'layout {path}')


def layout_from_dict(spec: Any, required: tuple[str, ...] = (), where: str = 'layout') -> Layout:
  if not isinstance(spec, dict) or not isinstance(spec.get('columns'), list):
    raise ValueError(f'{where} needs a "columns:" list')
  columns = []
  for n, raw in enumerate(spec['columns'], 1):
    try:
      column = Column(
        name=str(raw['name']),
        start=int(raw['start']) - 1,
        length=int(raw['length']),
        type=str(raw.get('type', 'text')),
        decimals=int(raw.get('decimals', 0)),
        date_format=str(raw.get('format', '')),
      )
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f'{where}: column {n} needs name, start and length ({e})') from e
    if column.type not in TYPES:
      raise ValueError(
        f'{where}: column {column.name} has type {column.type!r}, not one of {TYPES}'
      )
    if column.start < 0 or column.length < 1:
      raise ValueError(f'{where}: column {column.name} has start < 1 or length < 1')
    if column.type == 'date':
      tokens = _DATE_PARTS.findall(column.date_format)
      if not tokens:
        raise ValueError(f'{where}: date column {column.name} needs a format like YYMMDDHHMI')
      if len(tokens) != len(set(tokens)):
        raise ValueError(
          f'{where}: date format {column.date_format} of {column.name} repeats a '
          'part (minutes are MI, months MM)'
        )
    columns.append(column)
  ends = sorted((c.start, c.start + c.length, c.name) for c in columns)
  for (_, end, name), (start, _, other) in itertools.pairwise(ends):
    if start < end:
      raise ValueError(f'{where}: columns {name} and {other} overlap')
  record_length = int(spec.get('record_length') or (ends[-1][1] if ends else 0))
  if ends and ends[-1][1] > record_length:
    raise ValueError(f'{where}: column {ends[-1][2]} ends after record_length {record_length}')
  missing = [name for name in required if name not in {c.name for c in columns}]
  if missing:
    raise ValueError(f'{where} lacks columns {missing}')
  encoding = str(spec.get('encoding', 'cp1252'))
  try:
    ''.encode(encoding)
  except LookupError:
    raise ValueError(f'{where}: unknown encoding {encoding!r}') from None
  return Layout(
    tuple(columns),
    record_length,
    encoding,
    bool(spec.get('newline', True)),
    int(spec.get('year_pivot', 70)),
  )


def _date(text: str, column: Column, pivot: int) -> dt.datetime:
  """A date by a format of tokens and separators: a token's offset in the
  format is its offset in the text (YYMMDD, YYYY-MM-DD HH:MI, ...)."""
  if len(text) != len(column.date_format):
    raise ColumnError(column.name, 'invalid_date', f'{text!r} does not match {column.date_format}')
  parts = {}
  for match in _DATE_PARTS.finditer(column.date_format):
    piece = text[match.start() : match.end()]
    if not piece.isdigit():
      raise ColumnError(
        column.name, 'invalid_date', f'{text!r} does not match {column.date_format}'
      )
    parts[match.group(0)] = int(piece)
  year = parts.get('YYYY')
  if year is None:
    yy = parts.get('YY', 0)
    year = (2000 if yy < pivot else 1900) + yy
  try:
    return dt.datetime(
      year,
      parts.get('MM', 1),
      parts.get('DD', 1),
      parts.get('HH', 0),
      parts.get('MI', 0),
      parts.get('SS', 0),
    )
  except ValueError:
    raise ColumnError(column.name, 'invalid_date', f'{text!r} is not a real date') from None


def convert(text: str, column: Column, pivot: int) -> Any:
  """One column's text as its type; ColumnError names the column at fault."""
  if column.type == 'text':
    return text.strip()
  stripped = text.strip()
  if column.type == 'date':
    return _date(stripped, column, pivot)
  if not _SIGNED_DIGITS.fullmatch(stripped):
    raise ColumnError(column.name, 'invalid_number', f'{text!r} is not a number')
  if column.type == 'int':
    return int(stripped)
  return Decimal(int(stripped)).scaleb(-column.decimals)


def cut_record(
  record: bytes, layout: Layout, encoding: str
) -> tuple[dict[str, Any], list[ColumnError]]:
  """Every column's value, and the error of every column that failed."""
  values, errors = {}, []
  for column in layout.columns:
    raw = record[column.start : column.start + column.length]
    try:
      text = raw.decode(encoding)
    except UnicodeDecodeError as e:
      errors.append(
        ColumnError(
          column.name, 'undecodable_bytes', f'byte 0x{raw[e.start]:02x} is not {encoding}'
        )
      )
      continue
    try:
      values[column.name] = convert(text, column, layout.year_pivot)
    except ColumnError as e:
      errors.append(e)
  return values, errors
