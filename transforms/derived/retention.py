"""The customers table: retention features per customer, as of the run's end.

A customer is any customer_id of the order history or user_id of the
clickstream (the shop uses one id space for both). ``as_of`` is the latest
order or session end in the tables (or ``--as-of``), so the same tables give
the same features whenever they are derived.

- first/last order time, ``orders`` (not cancelled), ``cancellations``;
- ``monetary``: the sum of order totals net of cancellations (a cancellation's
  total is negative), in the orders' currency; None if they mix currencies;
- ``recency_days``: as_of - last order, in days;
- ``sessions_7d/30d/90d``: sessions that started in (as_of - N days, as_of];
- ``cohort_month``: YYYY-MM of the first order, else of the first session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Optional

import apache_beam as beam
from apache_beam import pvalue

from transforms.event_time import US_PER_DAY
from transforms.records import Customer, Order, SessionRow

WINDOWS_DAYS = (7, 30, 90)


def month_of(time_us: int) -> str:
  return dt.datetime.fromtimestamp(time_us / 1e6, dt.UTC).strftime('%Y-%m')


def customer_features(
  customer_id: str, orders: Iterable[Order], sessions: Iterable[SessionRow], as_of_us: int
) -> Customer:
  orders = sorted(orders, key=lambda o: (o.order_time, o.order_id))
  starts = sorted(s.session_start for s in sessions)
  kept = [o for o in orders if not o.is_cancellation]
  currencies = {o.currency for o in orders}
  monetary = (
    str(sum((Decimal(o.total_amount) for o in orders), Decimal(0)))
    if len(currencies) == 1
    else None
  )
  first_order = orders[0].order_time if orders else None
  last_order = orders[-1].order_time if orders else None
  windows = [
    sum(1 for t in starts if as_of_us - days * US_PER_DAY < t <= as_of_us) for days in WINDOWS_DAYS
  ]
  first_seen = first_order if first_order is not None else (starts[0] if starts else None)
  return Customer(
    customer_id=customer_id,
    first_order_time=first_order,
    last_order_time=last_order,
    orders=len(kept),
    cancellations=len(orders) - len(kept),
    monetary=monetary,
    currency=currencies.pop() if len(currencies) == 1 else None,
    recency_days=(as_of_us - last_order) / US_PER_DAY if last_order is not None else None,
    sessions_total=len(starts),
    sessions_7d=windows[0],
    sessions_30d=windows[1],
    sessions_90d=windows[2],
    last_session_time=starts[-1] if starts else None,
    cohort_month=month_of(first_seen) if first_seen is not None else None,
    as_of=as_of_us,
  )


def _latest(times: Iterable[int]) -> Optional[int]:
  return max(times, default=None)


class BuildCustomers(beam.PTransform):
  """(orders, sessions) to Customers; ``as_of_us`` None: the latest time in the data."""

  def __init__(self, as_of_us: Optional[int] = None):
    super().__init__()
    self._as_of_us = as_of_us

  def expand(self, inputs):
    orders, sessions = inputs
    if self._as_of_us is not None:
      as_of = orders.pipeline | 'AsOf' >> beam.Create([self._as_of_us])
    else:
      as_of = (
        (
          orders | 'OrderTimes' >> beam.Map(lambda o: o.order_time),
          sessions | 'SessionEnds' >> beam.Map(lambda s: s.session_end),
        )
        | 'AllTimes' >> beam.Flatten()
        | 'Latest' >> beam.CombineGlobally(_latest)
      )
    grouped = {
      'orders': orders
      | 'WithCustomer' >> beam.Filter(lambda o: o.customer_id is not None)
      | 'KeyOrders' >> beam.Map(lambda o: (o.customer_id, o)),
      'sessions': sessions
      | 'WithUser' >> beam.Filter(lambda s: s.user_id is not None)
      | 'KeySessions' >> beam.Map(lambda s: (s.user_id, s)),
    } | 'ByCustomer' >> beam.CoGroupByKey()
    return grouped | 'Features' >> beam.Map(
      lambda keyed, as_of_us: customer_features(
        keyed[0], keyed[1]['orders'], keyed[1]['sessions'], as_of_us
      ),
      as_of_us=pvalue.AsSingleton(as_of),
    ).with_output_types(Customer)
