"""PooledDoFn: a DoFn whose per-element work runs on a small thread pool.

The heavy work of the table steps (parsing a chunk, deduplicating or
sessionizing a bucket) is mostly Arrow and numpy kernels, which release the
GIL; so on a runner that runs the whole pipeline in one process (the
FnApiRunner of direct.yaml) a second thread works on the next element while
the first runs Python. Where the runner has parallel workers of its own, one
thread (the default) does the work in place.

A subclass splits its element's handling in two:

    work(element) -> result        on a pool thread: no counters, no outputs
    emit(result) -> outputs        on the bundle's thread: counts and yields

Beam's counters and output receivers belong to the bundle's thread, hence the
split. With more than one thread an element's outputs leave in a later call
(or in finish_bundle) as WindowedValues with the element's own timestamp and
window; at most ``threads`` elements wait, so memory stays a few elements.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.utils.windowed_value import WindowedValue

from transforms import accounting


class PooledDoFn(accounting.CountingDoFn):
  """A CountingDoFn whose ``work`` runs on ``threads`` threads (in place for one)."""

  def __init__(self, threads: int = 1):
    if threads < 1:
      raise ValueError(f'threads must be at least 1, got {threads}')
    self._threads = threads

  def work(self, element) -> Any:
    """The element's result; runs on a pool thread, so touches no counter or output."""
    raise NotImplementedError

  def emit(self, result) -> Iterator:
    """The outputs of one work() result; runs on the bundle's thread, and may count."""
    raise NotImplementedError

  def setup(self):
    self._pool = (
      ThreadPoolExecutor(self._threads, type(self).__name__) if self._threads > 1 else None
    )

  def start_bundle(self):
    super().start_bundle()
    self._waiting: collections.deque[tuple[Future, Any, Any]] = collections.deque()

  def process(self, element, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
    if self._pool is None:
      yield from self.emit(self.work(element))
      return
    self._waiting.append((self._pool.submit(self.work, element), timestamp, window))
    while len(self._waiting) > self._threads or (self._waiting and self._waiting[0][0].done()):
      yield from self._oldest_outputs()

  def finish_bundle(self):
    while self._waiting:
      yield from self._oldest_outputs()
    super().finish_bundle()

  def teardown(self):
    if getattr(self, '_pool', None) is not None:
      self._pool.shutdown(cancel_futures=True)

  def _oldest_outputs(self) -> Iterator[Any]:
    future, timestamp, window = self._waiting.popleft()
    for output in self.emit(future.result()):
      if isinstance(output, pvalue.TaggedOutput):
        yield pvalue.TaggedOutput(output.tag, WindowedValue(output.value, timestamp, (window,)))
      else:
        yield WindowedValue(output, timestamp, (window,))
