"""PooledDoFn: the same outputs, windows and counts on one thread or several."""

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from tests.conftest import beam_pipeline
from transforms import accounting
from transforms.pooled_dofn import PooledDoFn


class SquareAndCountOdd(PooledDoFn):
  """Squares on the pool; counts odd numbers and sends them to 'odd' on the bundle's thread."""

  def work(self, n):
    return n, n * n

  def emit(self, result):
    n, square = result
    if n % 2:
      self.count(accounting.READ, 'odd')
      yield beam.pvalue.TaggedOutput('odd', n)
    yield square


def with_window(value, win=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
  return value, win.start.micros, timestamp.micros


@pytest.mark.parametrize('threads', [1, 3])
def test_outputs_counts_and_windows_do_not_depend_on_the_threads(threads):
  numbers = list(range(40))
  p = beam_pipeline()
  outputs = (
    p
    | beam.Create(numbers, reshuffle=False)
    | beam.Map(lambda n: window.TimestampedValue(n, n * 10))
    | beam.WindowInto(window.FixedWindows(100))
    | beam.ParDo(SquareAndCountOdd(threads)).with_outputs('odd', main='squares')
  )
  squares = outputs['squares'] | 'SquareWindows' >> beam.Map(with_window)
  expected = [(n * n, n * 10 // 100 * 100 * 1_000_000, n * 10 * 1_000_000) for n in numbers]
  assert_that(squares, equal_to(expected), label='Squares')
  assert_that(outputs['odd'], equal_to([n for n in numbers if n % 2]), label='Odd')
  result = p.run()
  result.wait_until_finish()
  counters = result.metrics().query(MetricsFilter().with_namespace(accounting.NAMESPACE))
  assert [(c.key.metric.name, c.committed) for c in counters['counters']] == [
    (accounting.READ + accounting.SEPARATOR + 'odd', 20)
  ]


def test_an_error_on_a_pool_thread_fails_the_bundle():
  class Broken(PooledDoFn):
    def work(self, n):
      raise RuntimeError(f'bad element {n}')

    def emit(self, result):
      yield result

  dofn = Broken(threads=2)
  dofn.setup()
  dofn.start_bundle()
  with pytest.raises(RuntimeError, match='bad element'):
    for n in range(5):
      list(dofn.process(n))
    list(dofn.finish_bundle())
  dofn.teardown()


def test_threads_below_one_are_refused():
  with pytest.raises(ValueError, match='at least 1'):
    SquareAndCountOdd(0)
