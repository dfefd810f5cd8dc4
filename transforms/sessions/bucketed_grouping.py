"""GroupIntoBuckets: a cheap batch shuffle that brings equal keys together.

A GroupByKey per key moves one element per event and costs ~10 us an event
on the DirectRunner; grouping many keys into a few hash buckets, with each
bundle sending one Arrow batch per bucket (event_batches: zstd IPC bytes),
moves a handful of large elements instead, the same idea as combiner
lifting. Whoever consumes a bucket works on its rows as one table.

Elements may be records or Arrow tables of records (what a columnar step
emits); a table is split by bucket column-wise, hashing each distinct key once.

The hash is a polynomial over the key's UTF-8 bytes, computed in numpy for a
column at once and by a pure-Python twin for single records: stable across
processes and machines (Python's hash() is salted per process). It replaced
CRC-32 per distinct key, which cost 1.6 s of a 1M-event run (py-spy), the
dedup key (event_id) being nearly all distinct.

Batch only: the output is in the global window. Streaming modes group by key
in event-time windows instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms import event_batches

# Large enough that per-element shuffle cost vanishes, small enough that a
# bundle's buffers stay a few MB per bucket.
BATCH_SIZE = 20_000

KeyFn = Callable[[tuple], str]
KeyColumnFn = Callable[[pa.Table], pa.ChunkedArray]


_MASK = (1 << 64) - 1
_MULTIPLIER = 0x100000001B3  # any odd 64-bit constant spreads the bytes; this is FNV's prime


def _mixed(h):
  """splitmix64's finalizer: every input bit reaches the low bits taken by the modulo.

  Works alike on a Python int and a numpy uint64 array (which wraps at 2**64).
  """
  h ^= h >> 30
  h = (h * 0xBF58476D1CE4E5B9) & _MASK
  h ^= h >> 27
  h = (h * 0x94D049BB133111EB) & _MASK
  return h ^ (h >> 31)


def key_hash(key: str) -> int:
  """sum((byte + 1) * M**i) mod 2**64 over the key's UTF-8 bytes, mixed."""
  h, weight = 0, 1
  for byte in key.encode():
    h = (h + (byte + 1) * weight) & _MASK
    weight = (weight * _MULTIPLIER) & _MASK
  return int(_mixed(h))


def key_hashes(keys) -> np.ndarray:
  """key_hash of every value of a string column (nulls hash as ''), as uint64."""
  keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
  keys = pc.fill_null(keys.cast(pa.string()), '').cast(pa.binary())
  _, offset_buffer, data_buffer = keys.buffers()
  offsets = np.frombuffer(offset_buffer, np.int32)[keys.offset : keys.offset + len(keys) + 1]
  starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
  hashes = np.zeros(len(keys), np.uint64)
  if lengths.any():
    data = np.frombuffer(data_buffer, np.uint8)[offsets[0] : offsets[-1]]
    position = np.arange(len(data)) - np.repeat(starts, lengths)
    weights = np.cumprod(np.full(int(lengths.max()), _MULTIPLIER, np.uint64))
    weights = np.concatenate([np.ones(1, np.uint64), weights[:-1]])  # M**0, M**1, ...
    terms = (data.astype(np.uint64) + np.uint64(1)) * weights[position]
    nonempty = lengths > 0
    hashes[nonempty] = np.add.reduceat(terms, starts[nonempty])
  return _mixed(hashes)


def bucket_of(key: str, num_buckets: int) -> int:
  return key_hash(key) % num_buckets


def buckets_of_column(keys, num_buckets: int) -> np.ndarray:
  """bucket_of for every value of a string column."""
  return (key_hashes(keys) % np.uint64(num_buckets)).astype(np.int64)


class _BatchByBucket(beam.DoFn):
  def __init__(
    self, record_type: type, key_fn: KeyFn, key_column: Optional[KeyColumnFn], num_buckets: int
  ):
    self._record_type = record_type
    self._key_fn = key_fn
    self._key_column = key_column
    self._num_buckets = num_buckets

  def start_bundle(self):
    self._rows: dict[int, list] = {}
    self._tables: dict[int, list[pa.Table]] = {}
    self._sizes: dict[int, int] = {}

  def process(self, element):
    if isinstance(element, (pa.Table, pa.RecordBatch)):
      yield from self._add_table(element)
    else:
      bucket = bucket_of(self._key_fn(element), self._num_buckets)
      self._rows.setdefault(bucket, []).append(element)
      yield from self._grown(bucket, 1)

  def _add_table(self, table):
    if self._key_column is None:
      raise TypeError(f'GroupIntoBuckets got a table but has no key column for {self._record_type}')
    if not table.num_rows:
      return
    buckets = buckets_of_column(self._key_column(table), self._num_buckets)
    for bucket, part in event_batches.split_by(table, buckets):
      self._tables.setdefault(bucket, []).append(part)
      yield from self._grown(bucket, part.num_rows)

  def _grown(self, bucket: int, rows: int):
    self._sizes[bucket] = self._sizes.get(bucket, 0) + rows
    if self._sizes[bucket] >= BATCH_SIZE:
      yield bucket, self._take(bucket)

  def _take(self, bucket: int) -> bytes:
    del self._sizes[bucket]
    parts = self._tables.pop(bucket, [])
    rows = self._rows.pop(bucket, None)
    if rows:
      parts.append(event_batches.to_batch(self._record_type, rows))
    return event_batches.encode(event_batches.concat(self._record_type, parts))

  def finish_bundle(self):
    for bucket in list(self._sizes):
      yield WindowedValue((bucket, self._take(bucket)), MIN_TIMESTAMP, [GlobalWindow()])


class GroupIntoBuckets(beam.PTransform):
  """PCollection[T or Table of T] to PCollection[(bucket, Iterable[bytes])] by hash of key.

  ``key_fn`` gives a record's key, ``key_column`` the keys of a table's rows
  (the same keys: both feed bucket_of). A batch crosses the shuffle as one
  bytes value; consumers read a bucket with ``bucket_table``.

  Also takes a tuple of PCollections: each is batched where it is produced
  and only the batches are flattened, so no stage boundary ever sees the
  elements one by one.
  """

  def __init__(
    self,
    key_fn: KeyFn,
    num_buckets: int = 16,
    record_type: Optional[type] = None,
    key_column: Optional[KeyColumnFn] = None,
  ):
    super().__init__()
    if num_buckets < 1:
      raise ValueError(f'num_buckets must be at least 1, got {num_buckets}')
    self._key_fn = key_fn
    self._num_buckets = num_buckets
    self._record_type = record_type
    self._key_column = key_column

  def expand(self, inputs):
    pcolls = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    for pcoll in pcolls:
      if not isinstance(pcoll.windowing.windowfn, GlobalWindows):
        raise ValueError(
          'GroupIntoBuckets is a batch shuffle and needs the global window; '
          f'got {pcoll.windowing.windowfn}'
        )
    record_type = self._record_type or pcolls[0].element_type
    if not hasattr(record_type, '_fields'):
      raise ValueError(f'GroupIntoBuckets needs a record (NamedTuple) type, got {record_type}')
    batches = [
      pcoll
      | f'BatchByBucket{n}'
      >> beam.ParDo(
        _BatchByBucket(record_type, self._key_fn, self._key_column, self._num_buckets)
      ).with_output_types(tuple[int, bytes])
      for n, pcoll in enumerate(pcolls)
    ]
    if len(batches) > 1:
      batches = [batches | 'FlattenBatches' >> beam.Flatten()]
    return batches[0] | 'ShuffleBuckets' >> beam.GroupByKey()


def bucket_table(encoded_batches: Iterable[bytes], record_type: type) -> pa.Table:
  """All rows of one bucket, from GroupIntoBuckets' encoded batches, as one table."""
  return event_batches.concat(record_type, map(event_batches.decode, encoded_batches))


def bucket_records(encoded_batches: Iterable[bytes], record_type: type) -> list:
  """The rows of one bucket as records of ``record_type``."""
  return event_batches.from_batch(record_type, bucket_table(encoded_batches, record_type))
