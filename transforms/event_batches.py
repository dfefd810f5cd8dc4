"""Record batches: the event chain's rows as Arrow columns, and their wire form.

A batch holds records of one NamedTuple type column by column, with the
record's own field names and Python-equivalent types (times as int64
microseconds, money as decimal strings), so a row read back from a batch is
the record that went in. Tables cast to their Parquet schema only at the sink.

Between stages a batch travels as Arrow IPC bytes compressed with zstd: one
element for thousands of rows, no pickled tuples, and (measured on the
prototype) about a third of the memory of uncompressed buffers in a shuffle.

    batch = to_batch(Event, events)
    events == from_batch(Event, batch)
    decode(encode(batch)).equals(batch)
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import coders

Table = Union[pa.Table, pa.RecordBatch]

_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression='zstd')


@functools.cache
def schema_of(record_type: type) -> pa.Schema:
  """The Arrow schema of a NamedTuple of str/int/float/bool (Optional or not) fields."""
  hints = typing.get_type_hints(record_type)
  fields = []
  for name in record_type._fields:  # type: ignore[attr-defined]
    hint = hints[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    python_type = args[0] if args else hint
    if python_type not in _ARROW_TYPES:
      raise TypeError(f'{record_type.__name__}.{name}: {hint} has no batch column type')
    fields.append(pa.field(name, _ARROW_TYPES[python_type]))
  return pa.schema(fields)


def to_batch(record_type: type, records: Sequence[tuple]) -> pa.RecordBatch:
  """Records of ``record_type`` as one RecordBatch in ``schema_of(record_type)``."""
  schema = schema_of(record_type)
  if not records:
    return pa.RecordBatch.from_pylist([], schema)
  columns = zip(*records, strict=True)
  return pa.RecordBatch.from_arrays(
    [pa.array(values, field.type) for values, field in zip(columns, schema, strict=True)],
    schema=schema,
  )


def from_batch(record_type: type, batch: Table) -> list:
  """The records of a batch (or table) of ``schema_of(record_type)``, in order."""
  make = record_type._make  # type: ignore[attr-defined]
  columns = [python_values(batch.column(name)) for name in record_type._fields]  # type: ignore[attr-defined]
  return [make(row) for row in zip(*columns, strict=True)]


def concat(record_type: type, batches: Iterable[Table]) -> pa.Table:
  """One table of every batch; an empty table of the type's schema when there are none."""
  tables = [b if isinstance(b, pa.Table) else pa.Table.from_batches([b]) for b in batches]
  if not tables:
    return schema_of(record_type).empty_table()
  return pa.concat_tables(tables)


def encode(batch: Table) -> bytes:
  """A batch or table as zstd-compressed Arrow IPC stream bytes."""
  if isinstance(batch, pa.Table):
    # One message per chunk, each compressed alone: 100 chunks of 200 rows took
    # 15x as long as the same rows in one chunk (measured).
    batch = batch.combine_chunks()
  sink = pa.BufferOutputStream()
  with pa.ipc.new_stream(sink, batch.schema, options=_IPC_OPTIONS) as writer:
    writer.write(batch)
  return sink.getvalue().to_pybytes()


def decode(encoded: bytes) -> pa.Table:
  return pa.ipc.open_stream(encoded).read_all()


_NUMPY_TYPES = {
  pa.int64(): np.int64,
  pa.int32(): np.int32,
  pa.float64(): np.float64,
  pa.uint64(): np.uint64,
}


def as_numpy(array) -> np.ndarray:
  """A numpy copy or view of a numeric or boolean column: Array.to_numpy's values.

  Without pandas installed, pyarrow 16 tries to import it on every to_numpy and
  every compute call given a Python value, ~35 us each (measured): most of a
  streaming key's call of the session rule. Null-free numbers and booleans are
  read from their buffers here; anything else goes to to_numpy.
  """
  if isinstance(array, pa.ChunkedArray):
    array = array.combine_chunks()
  if array.null_count == 0:
    if array.type in _NUMPY_TYPES:
      values = np.frombuffer(array.buffers()[1], _NUMPY_TYPES[array.type])
      return values[array.offset : array.offset + len(array)]
    if array.type == pa.bool_():
      bits = np.unpackbits(np.frombuffer(array.buffers()[1], np.uint8), bitorder='little')
      return bits[array.offset : array.offset + len(array)].astype(bool)
  return array.to_numpy(zero_copy_only=False)


_OFFSET_TYPES = {
  pa.string(): np.int32,
  pa.binary(): np.int32,
  pa.large_string(): np.int64,
  pa.large_binary(): np.int64,
}
_BINARY_TYPES = (pa.binary(), pa.large_binary())
# Below this many values to_pylist is as fast (a streaming key's few events).
_FEWEST_FROM_BUFFERS = 32


def python_values(array) -> list:
  """array.to_pylist() of a column, 2-7x faster for 32 to 1,500 strings or binaries.

  pyarrow 16 makes a Scalar per value in to_pylist (~1.4 us a string), and its
  to_numpy tries to import pandas on every call (~100 us): the session keys,
  enrichment's distinct values and the lines of a chunk spent ~1 s of held
  GIL in to_pylist at 1M events (py-spy). Here strings and binaries are cut
  from the column's buffers instead; other types and short columns go to
  to_pylist.
  """
  if len(array) < _FEWEST_FROM_BUFFERS:
    return array.to_pylist()
  if isinstance(array, pa.ChunkedArray):
    array = array.combine_chunks()
  offset_type = _OFFSET_TYPES.get(array.type)
  if offset_type is None:
    return array.to_pylist()
  validity, offset_buffer, data = array.buffers()
  start, stop = array.offset, array.offset + len(array)
  offsets = np.frombuffer(offset_buffer, offset_type)[start : stop + 1]
  first, last = int(offsets[0]), int(offsets[-1])
  raw = data.slice(first, last - first).to_pybytes() if data is not None else b''
  bounds = (offsets - first).tolist()
  pairs = zip(bounds[:-1], bounds[1:], strict=True)
  if array.type in _BINARY_TYPES:
    values = [raw[begin:end] for begin, end in pairs]
  elif raw.isascii():
    # One decode: an ASCII byte offset is also the character's offset.
    text = raw.decode('ascii')
    values = [text[begin:end] for begin, end in pairs]
  else:
    values = [raw[begin:end].decode() for begin, end in pairs]
  if array.null_count:
    bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder='little')[start:stop]
    for row in np.flatnonzero(bits == 0).tolist():
      values[row] = None
  return values


def rows_of(array: pa.Array, rows: np.ndarray) -> pa.Array:
  """array.take(rows) for ascending rows, without the copy when they are all of them."""
  if len(rows) == len(array):
    return array
  return array.take(pa.array(rows))


def split_by(table: pa.Table, values: np.ndarray) -> Iterator[tuple[int, pa.Table]]:
  """(value, the rows that have it, in table order) for each distinct value of an integer
  array with a value per row, ascending. One take for all parts, each part then a slice:
  a filter per value copied the whole table once per value (measured).
  """
  order = np.argsort(values, kind='stable')
  ordered = table.take(pa.array(order)) if len(order) else table
  distinct, starts, counts = np.unique(values[order], return_index=True, return_counts=True)
  for value, start, count in zip(distinct.tolist(), starts.tolist(), counts.tolist(), strict=True):
    yield value, ordered.slice(start, count)


def dictionary_encoded(column) -> pa.DictionaryArray:
  """A column as a DictionaryArray, for several map_distinct calls over it to share."""
  if isinstance(column, pa.ChunkedArray):
    column = column.combine_chunks()
  return pc.dictionary_encode(column)


def map_distinct(columns: Sequence, fn: Callable, types: Sequence[pa.DataType]) -> list[pa.Array]:
  """``fn(*values)`` of each row, called once per distinct combination of the columns.

  ``fn`` returns one value per type (a bare value when there is one type);
  the results are spread back over the rows as one array per type. Nulls are
  values like any other. Enrichment sees few distinct user agents, IPs and
  URLs per batch, so this is where record-at-a-time work becomes per-value.
  """
  distinct_values, codes = _distinct_codes(columns[0])
  argument_lists = [distinct_values]
  for column in columns[1:]:
    values, column_codes = _distinct_codes(column)
    argument_lists.append(values)
    codes = codes * len(values) + column_codes
  if len(columns) == 1:
    rows = codes  # the dictionary's codes are already dense and distinct
    results = [fn(value) for value in distinct_values]
  else:
    # Each combination back to its columns' codes in numpy, then one call per
    # combination: a divmod per column and combination in Python cost more
    # than the calls (measured).
    combinations, rows = np.unique(codes, return_inverse=True)
    arguments = []
    for values in reversed(argument_lists):
      combinations, column_codes = np.divmod(combinations, len(values))
      arguments.append([values[code] for code in column_codes.tolist()])
    results = [fn(*args) for args in zip(*reversed(arguments), strict=True)]
  rows = pa.array(rows)
  if len(types) == 1:
    return [pa.array(results, types[0]).take(rows)]
  return [pa.array([r[i] for r in results], kind).take(rows) for i, kind in enumerate(types)]


def _distinct_codes(column) -> tuple[list, np.ndarray]:
  """(the column's distinct values, None last if it has nulls; each row's index into them).

  A column already dictionary-encoded (dictionary_encoded) is taken as it is.
  """
  if isinstance(column, pa.ChunkedArray):
    column = column.combine_chunks()
  encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
  values = python_values(encoded.dictionary)
  indices = encoded.indices
  if indices.null_count:
    values.append(None)
    indices = pc.fill_null(indices, len(values) - 1)
  return values, as_numpy(indices).astype(np.int64)


class TableCoder(coders.Coder):
  """A pyarrow Table as zstd IPC bytes: what a runner uses where a stage boundary
  materializes tables (portable runners, or when fusion breaks)."""

  def encode(self, value: pa.Table) -> bytes:
    return encode(value)

  def decode(self, encoded: bytes) -> pa.Table:
    return decode(encoded)

  def estimate_size(self, value: pa.Table) -> int:
    # The runner sizes the first ten elements of every output and then a
    # sample; the default (len of encode) compressed each whole table again,
    # and with few, large elements that was every table (seen in a profile).
    return value.nbytes

  def is_deterministic(self) -> bool:
    return False

  def to_type_hint(self):
    return pa.Table


coders.registry.register_coder(pa.Table, TableCoder)
