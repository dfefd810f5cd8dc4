"""BuildOrders: order lines brought together per order, numbered, and summed.

Lines of one order (invoice) may be scattered over a file or several files.
Grouped by order_id, they are sorted by (source, position), repeated lines
(every column equal: a double export, common in legacy dumps) are dropped as
duplicates, the rest numbered 1..n as ``line_no``, and one Order row sums them.

    lines | BuildOrders()
    -> DoOutputsTuple: [ORDER_LINES_TAG] numbered OrderLines, [ORDERS_TAG] Orders
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

import apache_beam as beam
from apache_beam import pvalue

from transforms import accounting
from transforms.parse.parse_orders import PRODUCT, money
from transforms.records import ORDER_LINES_TAG, ORDERS_TAG, Order, OrderLine, typed_outputs
from transforms.sessions.bucketed_grouping import GroupIntoBuckets, bucket_records


def _content(line: OrderLine) -> tuple:
  """What makes two lines the same line: everything but where they were read.

  Not the line_no either: lines read back from the table (a replay) have one.
  """
  return line._replace(line_no=None, source='', position=0)


def number_lines(lines: Iterable[OrderLine]) -> tuple[list[OrderLine], list[OrderLine]]:
  """(numbered distinct lines, dropped repeats) of one order, in source order."""
  kept, repeats, seen = [], [], set()
  for line in sorted(lines, key=lambda x: (x.source, x.position)):
    content = _content(line)
    if content in seen:
      repeats.append(line)
      continue
    seen.add(content)
    kept.append(line._replace(line_no=len(kept) + 1))
  return kept, repeats


def summarize_order(lines: Sequence[OrderLine]) -> Order:
  """The orders-table row of one order's numbered lines."""
  first = lines[0]
  total = sum((Decimal(line.amount) for line in lines), Decimal(0))
  products = sum((Decimal(line.amount) for line in lines if line.line_type == PRODUCT), Decimal(0))
  return Order(
    order_id=first.order_id,
    customer_id=next((line.customer_id for line in lines if line.customer_id), None),
    order_time=min(line.order_time for line in lines),
    country=first.country,
    country_name=first.country_name,
    is_cancellation=first.is_cancellation,
    line_count=len(lines),
    total_amount=money(total),
    product_amount=money(products),
    service_amount=money(total - products),
    currency=first.currency,
  )


class _BuildBucketOrders(accounting.CountingDoFn):
  def process(self, bucket) -> Iterator:
    _, batches = bucket
    by_order: dict[str, list[OrderLine]] = {}
    for line in bucket_records(batches, OrderLine):
      by_order.setdefault(line.order_id, []).append(line)
    for order_id in sorted(by_order):
      kept, repeats = number_lines(by_order[order_id])
      for repeat in repeats:
        self.count(accounting.DUPLICATE, repeat.source)
      yield pvalue.TaggedOutput(ORDERS_TAG, summarize_order(kept))
      yield from kept


class BuildOrders(beam.PTransform):
  """OrderLines (one PCollection or a tuple of them) to numbered lines and Orders."""

  def __init__(self, num_buckets: int = 16):
    super().__init__()
    self._num_buckets = num_buckets

  def expand(self, lines):
    outputs = (
      lines
      | 'GroupByOrder' >> GroupIntoBuckets(lambda line: line.order_id, self._num_buckets)
      | 'NumberAndSum'
      >> beam.ParDo(_BuildBucketOrders())
      .with_output_types(OrderLine)
      .with_outputs(ORDERS_TAG, main=ORDER_LINES_TAG)
    )
    return typed_outputs(outputs, **{ORDERS_TAG: Order})
