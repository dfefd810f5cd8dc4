"""The events-jsonl parser a chunk of lines at a time, as Arrow columns.

Most lines of an export are plain: a flat ASCII object of strings and integers,
no escapes. Those are decoded by Arrow's JSON reader in one call and validated
as column expressions, with the per-value rules of normalize.py (event type,
time text, money, currency, quantity) called once per distinct value. Every
other line, and every line a rule rejects, goes to the line parser, which gives
its dead letter with every reason; so a line's outcome does not depend on the
path it took (tests compare the two paths line by line).

    parser = EventChunkParser(default_currency='EUR', now_us=now)
    chunk = parser.parse_chunk(line_chunk)   # a LineChunk of one source
    chunk.table, chunk.filtered, chunk.rest   # rest: for parser(record)

On a generated day of 92,000-103,000 lines this path took 0.68 s, the line
parser 0.74-0.93 s before its records were made into a table (a few us a row
more); most of what is left is Arrow's regex and JSON passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from transforms.dead_letters import FieldError
from transforms.event_batches import as_numpy, map_distinct, python_values, schema_of
from transforms.event_time import (
  MAX_FUTURE_US,
  MILLIS_THRESHOLD,
  MIN_PLAUSIBLE_US,
  US_PER_SECOND,
  EventTimeError,
  iso_times_us,
  parse_event_time,
)
from transforms.fixed_fields import string_bytes
from transforms.parse.event_types import canonical_event_type
from transforms.parse.line_chunks import ParsedChunk, ascii_text, plain_lines
from transforms.parse.normalize import (
  KNOWN_FIELDS,
  MAX_ID_LENGTH,
  MAX_TEXT_LENGTH,
  content_id,
  to_currency,
  to_money,
  to_quantity,
)
from transforms.parse.parse_events import EventLineParser
from transforms.records import Event, LineChunk

# A flat object of "word": "text" or integer pairs. After plain_lines (printable
# ASCII, no backslash) there are no escapes, so every quote opens or closes a
# key or a value; integers of at most 18 digits fit int64.
_KEY = r'"[A-Za-z0-9_]+"'
_VALUE = r'(?:"[^"]*"|-?[1-9][0-9]{0,17}|0)'
_PAIR = _KEY + r' *: *' + _VALUE
_PLAIN_OBJECT = r'^ *\{ *' + _PAIR + r'(?: *, *' + _PAIR + r')* *\} *$'
# An integer value after its key, rewritten as a string so that one text column
# holds both ("12" and 12 mean the same to every rule but the time's). A quoted
# word followed by a colon is a key: the text between a closing and the next
# opening quote always holds a ',' or ':', which a word cannot.
_INTEGER_VALUE = '(' + _KEY + r' *: *)(-?[0-9]+)'
# Whether a plain line has one: a quote before a colon always ends a key.
_INTEGER_AFTER_KEY = r'" *: *-?[0-9]'
_NUMBER_TIME = r'"event_time" *: *-?[0-9]'
# Beyond 2**53 a float no longer holds every integer, and Python's int / 1000
# rounds once where numpy would round twice: the line parser decides those.
_EXACT_FLOAT = 2**53
# A Python value given to a compute function makes pyarrow 16 try to import pandas (as_numpy).
_NEWLINE = pa.scalar('\n')

_ID_FIELDS = ('user_id', 'anonymous_id', 'product_id', 'category_id', 'order_id', 'ip')
_TEXT_FIELDS = ('page_url', 'referrer', 'user_agent')
_READ_FIELDS = ('event_id', 'event_type', 'event_time', *_ID_FIELDS, *_TEXT_FIELDS)
_RULE_FIELDS = ('price', 'currency', 'quantity')
_READ_SCHEMA = pa.schema(
  [pa.field(name, pa.string()) for name in (*_READ_FIELDS, *_RULE_FIELDS, 'properties')]
)


def _by_rule(
  column: pa.ChunkedArray, name: str, rule: Callable[[str, Any], Any], kind: pa.DataType
) -> tuple[pa.Array, np.ndarray]:
  """(the rule's value of every row, whether the rule accepted it), the rule called once
  per distinct text; a null is accepted as null. A row the rule rejects is not kept:
  the line parser gives the reason."""
  encoded = pc.dictionary_encode(column.combine_chunks())
  values, accepted = [], []
  for text in python_values(encoded.dictionary):
    try:
      values.append(rule(name, text))
      accepted.append(True)
    except FieldError:
      values.append(None)
      accepted.append(False)
  rows = encoded.indices
  taken = pa.array(values, kind).take(rows)  # a null index takes null
  ok = pc.fill_null(pa.array(accepted, pa.bool_()).take(rows), True)
  return taken, as_numpy(ok)


class EventChunkParser(EventLineParser):
  """EventLineParser with ``parse_chunk``: plain lines as columns, the rest by line."""

  def parse_chunk(self, chunk: LineChunk) -> ParsedChunk:
    """The events of the chunk's plain lines, and its other lines as RawRecords."""
    payloads = chunk.lines
    plain = plain_lines(payloads) & as_numpy(pc.match_substring_regex(payloads, _PLAIN_OBJECT))
    candidates = np.flatnonzero(plain)
    lines = ascii_text(payloads, plain)
    with_integer = as_numpy(pc.match_substring_regex(lines, _INTEGER_AFTER_KEY))
    table = _read_objects(lines, with_integer) if len(lines) else None
    if table is None:  # none plain, or a key twice in a line: the line parser decides
      return ParsedChunk(pa.Table.from_pylist([], schema_of(Event)), {}, chunk.records())

    keep = np.ones(len(candidates), bool)
    columns: dict[str, pa.Array] = {}
    for name, limit in [(n, MAX_ID_LENGTH) for n in ('event_id', *_ID_FIELDS)] + [
      (n, MAX_TEXT_LENGTH) for n in _TEXT_FIELDS
    ]:
      text = pc.utf8_trim(table[name].combine_chunks(), ' ')  # str.strip() on printable ASCII
      lengths = np.diff(string_bytes(text)[1])  # bytes are characters in ASCII; a null has 0
      keep &= lengths <= limit
      columns[name] = pc.if_else(pa.array(lengths == 0), pa.scalar(None, pa.string()), text)

    event_type = map_distinct([table['event_type']], _event_type, [pa.string()])[0]
    keep &= as_numpy(event_type.is_valid())
    columns['event_type'] = event_type

    is_number = np.zeros(len(lines), bool)  # only a line with an integer value can have one
    is_number[with_integer] = as_numpy(
      pc.match_substring_regex(lines.filter(pa.array(with_integer)), _NUMBER_TIME)
    )
    event_time = self._event_times(table['event_time'].combine_chunks(), is_number)
    keep &= ~np.isnan(event_time)
    event_time = np.nan_to_num(event_time).astype(np.int64)
    now_us = self.now_us if self.now_us is not None else chunk.input_time
    keep &= (event_time >= MIN_PLAUSIBLE_US) & (event_time <= now_us + MAX_FUTURE_US)
    keep &= as_numpy(columns['user_id'].is_valid()) | as_numpy(columns['anonymous_id'].is_valid())

    for name, rule, kind in (
      ('price', to_money, pa.string()),
      ('currency', to_currency, pa.string()),
      ('quantity', to_quantity, pa.int64()),
    ):
      columns[name], accepted = _by_rule(table[name], name, rule, kind)
      keep &= accepted
    keep &= ~as_numpy(table['properties'].is_valid())  # not an object
    columns['currency'] = pc.if_else(
      pc.and_(columns['price'].is_valid(), columns['currency'].is_null()),
      self.default_currency,
      columns['currency'],
    )

    kept = np.flatnonzero(keep)
    extra = [name for name in table.column_names if name not in KNOWN_FIELDS]
    has_extra = np.zeros(len(candidates), bool)
    for name in extra:
      has_extra |= as_numpy(table[name].is_valid())
    missing_id = as_numpy(columns['event_id'].is_null())
    event_ids: list[Optional[str]] = [None] * len(candidates)
    properties: list[Optional[str]] = [None] * len(candidates)
    rows = np.flatnonzero(keep & (missing_id | has_extra))
    for row, payload in zip(
      rows.tolist(), python_values(payloads.take(candidates[rows])), strict=True
    ):
      obj = orjson.loads(payload)
      if missing_id[row]:
        event_ids[row] = content_id(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
      if has_extra[row]:
        extra_fields = {k: v for k, v in obj.items() if k not in KNOWN_FIELDS}
        properties[row] = orjson.dumps(extra_fields, option=orjson.OPT_SORT_KEYS).decode()
    columns['event_id'] = pc.coalesce(columns['event_id'], pa.array(event_ids, pa.string()))
    columns['properties'] = pa.array(properties, pa.string())

    taken = pa.array(kept)
    row_columns = {name: column.take(taken) for name, column in columns.items()}
    row_columns['event_time'] = pa.array(event_time[kept], pa.int64())
    row_columns['source'] = pa.array([chunk.source] * len(kept), pa.string())
    schema = schema_of(Event)
    events = pa.Table.from_arrays(
      [row_columns.get(f.name, pa.nulls(len(kept), f.type)).cast(f.type) for f in schema],
      schema=schema,
    )
    decided = np.zeros(len(payloads), bool)
    decided[candidates[kept]] = True
    rest = chunk.records(np.flatnonzero(~decided).tolist())
    return ParsedChunk(events, {}, rest)

  @staticmethod
  def _event_times(text: pa.Array, is_number: np.ndarray) -> np.ndarray:
    """UTC microseconds as float64 (exact below 2**53), NaN where parse_event_time would
    reject the value or the line parser must decide."""
    result = np.full(len(text), np.nan)
    numbers = np.flatnonzero(is_number & as_numpy(text.is_valid()))
    if len(numbers):
      value = as_numpy(pc.cast(text.take(pa.array(numbers)), pa.int64())).astype(np.float64)
      exact = np.abs(value) < _EXACT_FLOAT
      # parse_event_time: ms / 1000 then * 1e6, rounded half to even; seconds * 1e6 exactly.
      micros = np.where(
        np.abs(value) >= MILLIS_THRESHOLD,
        np.rint(value / 1000 * US_PER_SECOND),
        value * US_PER_SECOND,
      )
      result[numbers] = np.where(exact & (np.abs(micros) < _EXACT_FLOAT), micros, np.nan)
    texts = np.flatnonzero(~is_number)
    if len(texts):
      micros, decided = iso_times_us(text.take(pa.array(texts)))
      result[texts[decided]] = micros[decided]
      others = texts[~decided]
      if len(others):
        parsed = map_distinct([text.take(pa.array(others))], _time_of_text, [pa.float64()])[0]
        result[others] = as_numpy(parsed)
    return result


def _event_type(text: Optional[str]) -> Optional[str]:
  return canonical_event_type(text) if text is not None and text.strip() else None


def _time_of_text(text: Optional[str]) -> float:
  """parse_event_time of a JSON string, NaN if it rejects it or if a float would not hold it."""
  if text is None:
    return float('nan')
  try:
    micros = parse_event_time(text)
  except (EventTimeError, OverflowError):
    return float('nan')
  return float(micros) if abs(micros) < _EXACT_FLOAT else float('nan')


def _read_objects(lines: pa.StringArray, with_integer: np.ndarray) -> Optional[pa.Table]:
  """The objects of plain lines as a table of text columns (every field the schema names,
  plus any other key), or None when Arrow's reader refuses them. Integer values are
  rewritten as strings first, in the lines that have one only."""
  texts = lines
  if with_integer.all():
    texts = pc.replace_substring_regex(lines, _INTEGER_VALUE, r'\1"\2"')
  elif with_integer.any():
    mask = pa.array(with_integer)
    rewritten = pc.replace_substring_regex(lines.filter(mask), _INTEGER_VALUE, r'\1"\2"')
    texts = pc.replace_with_mask(lines, mask, rewritten)
  body = pc.binary_join_element_wise(texts, _NEWLINE, '').buffers()[2]
  try:
    table = pa_json.read_json(
      pa.BufferReader(body),
      read_options=pa_json.ReadOptions(use_threads=False, block_size=body.size + 1),
      parse_options=pa_json.ParseOptions(
        explicit_schema=_READ_SCHEMA, unexpected_field_behavior='infer'
      ),
    )
  except pa.ArrowInvalid:
    return None
  return table if table.num_rows == len(lines) else None
