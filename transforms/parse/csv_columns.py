"""CSV records of a chunk cut into their fields as Arrow columns.

The chunk parsers of the CSV exports (order_chunks.py, dimension_chunks.py)
take a record as columns when its fields are each plain (no quote, no comma) or
quoted whole (``"a, ""b"" c"``), the two shapes Python's csv module, which the
record parsers use, reads the same way as here; every other record (a quote
inside a plain field, text after a closing quote, a line break) is theirs.

    matched, fields = csv_columns(lines, 8)   # lines: a string array
    fields[k]: field k of each matched record, unquoted
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.event_batches import as_numpy, rows_of

_PLAIN_FIELD = '[^",]*'
_QUOTED_FIELD = '"(?:[^"]|"")*"'


def _unquoted(values: pa.Array) -> pa.Array:
  """A quoted field's text: without its quotes, each doubled quote one."""
  inner = pc.replace_substring(pc.utf8_slice_codeunits(values, 1, -1), '""', '"')
  return pc.if_else(pc.starts_with(values, '"'), inner, values)


def csv_columns(lines: pa.Array, width: int) -> tuple[np.ndarray, list[pa.Array]]:
  """(which lines are records of ``width`` plain or quoted fields, the fields of those).

  Records without a quote are cut at their commas in one kernel; only those with
  quotes pay for a regex that extracts each field.
  """
  plain = '^' + ','.join([_PLAIN_FIELD] * width) + '$'
  field = f'(?:{_PLAIN_FIELD}|{_QUOTED_FIELD})'
  quoted = '^' + ','.join(f'(?P<f{k}>{field})' for k in range(width)) + '$'
  is_plain = as_numpy(pc.match_substring_regex(lines, plain))
  is_quoted = ~is_plain & as_numpy(pc.match_substring_regex(lines, quoted))
  plain_rows, quoted_rows = np.flatnonzero(is_plain), np.flatnonzero(is_quoted)
  values = pc.list_flatten(pc.split_pattern(rows_of(lines, plain_rows), ','))
  fields = [values.take(pa.array(np.arange(k, len(values), width))) for k in range(width)]
  if len(quoted_rows):
    extracted = pc.extract_regex(lines.take(pa.array(quoted_rows)), quoted)
    rows = np.concatenate([plain_rows, quoted_rows])
    order = pa.array(np.argsort(rows, kind='stable'))
    fields = [
      pa.concat_arrays([fields[k], _unquoted(extracted.field(k))]).take(order) for k in range(width)
    ]
  return is_plain | is_quoted, fields
