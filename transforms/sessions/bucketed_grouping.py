"""GroupIntoBuckets: a cheap batch shuffle that brings equal keys together.

A GroupByKey per key moves one element per event and costs ~10 us an event
on the DirectRunner; grouping many keys into a few hash buckets, with each
bundle sending one list per bucket, moves a handful of large elements
instead (the same idea as combiner lifting). Whoever consumes a bucket
splits it by key again in plain Python.

The hash is CRC-32 of the key, stable across processes and machines
(Python's hash() is salted per process).

Batch only: the output is in the global window. Streaming modes group by key
in event-time windows instead.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms.record_coder import decode_batch, encode_batch

T = TypeVar('T')

# Large enough that per-element shuffle cost vanishes, small enough that a
# bundle's buffers stay a few MB per bucket.
BATCH_SIZE = 5000


def bucket_of(key: str, num_buckets: int) -> int:
  return zlib.crc32(key.encode()) % num_buckets


class _BatchByBucket(beam.DoFn, Generic[T]):
  def __init__(self, key_fn: Callable[[T], str], num_buckets: int):
    self._key_fn = key_fn
    self._num_buckets = num_buckets
    self._buffers: dict[int, list[T]] = {}

  def start_bundle(self):
    self._buffers = {}

  def process(self, element: T):
    bucket = bucket_of(self._key_fn(element), self._num_buckets)
    buffer = self._buffers.setdefault(bucket, [])
    buffer.append(element)
    if len(buffer) >= BATCH_SIZE:
      del self._buffers[bucket]
      yield bucket, encode_batch(buffer)

  def finish_bundle(self):
    for bucket, buffer in self._buffers.items():
      yield WindowedValue((bucket, encode_batch(buffer)), MIN_TIMESTAMP, [GlobalWindow()])
    self._buffers = {}


class GroupIntoBuckets(beam.PTransform):
  """PCollection[T] to PCollection[(bucket, Iterable[bytes])] by hash of key_fn.

  A batch crosses the shuffle as one bytes value (record_coder.encode_batch);
  consumers read a bucket with ``bucket_records``. Decoding is left to them
  on purpose: a PCollection of decoded lists would have Beam estimate element
  sizes by encoding thousands of records again.

  Also takes a tuple of PCollections: each is batched where it is produced
  and only the batches are flattened, so no stage boundary ever sees the
  elements one by one.
  """

  def __init__(self, key_fn: Callable[[T], str], num_buckets: int = 16):
    super().__init__()
    if num_buckets < 1:
      raise ValueError(f'num_buckets must be at least 1, got {num_buckets}')
    self._key_fn = key_fn
    self._num_buckets = num_buckets

  def expand(self, inputs):
    pcolls = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    for pcoll in pcolls:
      if not isinstance(pcoll.windowing.windowfn, GlobalWindows):
        raise ValueError(
          'GroupIntoBuckets is a batch shuffle and needs the global window; '
          f'got {pcoll.windowing.windowfn}'
        )
    batches = [
      pcoll
      | f'BatchByBucket{n}'
      >> beam.ParDo(_BatchByBucket(self._key_fn, self._num_buckets)).with_output_types(
        tuple[int, bytes]
      )
      for n, pcoll in enumerate(pcolls)
    ]
    if len(batches) > 1:
      batches = [batches | 'FlattenBatches' >> beam.Flatten()]
    return batches[0] | 'ShuffleBuckets' >> beam.GroupByKey()


def bucket_records(encoded_batches: Iterable[bytes], record_type: type) -> Iterator:
  """The records of one bucket, from GroupIntoBuckets' encoded batches."""
  for batch in encoded_batches:
    yield from decode_batch(batch, record_type)
