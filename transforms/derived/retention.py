"""The customers and retention_cohorts tables: retention as of the run's end.

A customer is any customer_id of the order history or user_id of the
clickstream (the shop uses one id space for both). ``as_of`` is the latest
order or session end in the tables (or ``--as-of``), so the same tables give
the same features whenever they are derived.

- first/last order time, ``orders`` (not cancelled), ``cancellations``;
- ``monetary``: the sum of order totals net of cancellations (a cancellation's
  total is negative), in the orders' currency; None if they mix currencies;
- ``recency_days``: as_of - last order, in days;
- ``sessions_7d/30d/90d``: sessions that started in (as_of - N days, as_of];
- ``cohort_month``: YYYY-MM of the first order, else of the first session;
- RFM among customers with an order that is not a cancellation: quintile
  scores 1-5 (5 best) of recency (fewer days better), frequency (orders) and
  monetary (net, where it is in one currency), ties scored alike
  (``quintile``), and ``rfm_segment`` named from the recency and frequency
  scores by the usual RFM grid (``RFM_SEGMENTS``).

retention_cohorts: customers with an order, by the month of their first order
(the cohort) and the months since it (0 .. the as_of month): ``cohort_size``,
``customers_active`` (an order that is not a cancellation, or a session, in
that month), ``retention_rate`` and ``net_revenue`` (that month's order totals,
net of cancellations; None if they mix currencies). Sessions before the first
order count for nothing.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Optional

import apache_beam as beam
from apache_beam import pvalue

from transforms.event_time import US_PER_DAY
from transforms.records import Customer, Order, RetentionCohort, SessionRow

WINDOWS_DAYS = (7, 30, 90)


def month_of(time_us: int) -> str:
  return dt.datetime.fromtimestamp(time_us / 1e6, dt.UTC).strftime('%Y-%m')


def month_index(time_us: int) -> int:
  """Months since year 0 of a UTC time: consecutive months differ by one."""
  day = dt.datetime.fromtimestamp(time_us / 1e6, dt.UTC)
  return day.year * 12 + day.month - 1


def month_name(index: int) -> str:
  return f'{index // 12:04d}-{index % 12 + 1:02d}'


def cohort_cells(
  orders: Iterable[Order], sessions: Iterable[SessionRow], as_of_us: int
) -> list[tuple[tuple[str, int], tuple[int, int, Decimal, frozenset]]]:
  """One customer's share of each cohort cell: ((cohort, months since), (1, active,
  net revenue, currencies)), for every month from the first order to as_of."""
  orders = list(orders)
  if not orders:
    return []
  cohort = month_index(min(o.order_time for o in orders))
  active = {month_index(o.order_time) for o in orders if not o.is_cancellation}
  active |= {month_index(s.session_start) for s in sessions}
  revenue: dict[int, Decimal] = {}
  currencies: dict[int, set] = {}
  for order in orders:
    month = month_index(order.order_time)
    revenue[month] = revenue.get(month, Decimal(0)) + Decimal(order.total_amount)
    currencies.setdefault(month, set()).add(order.currency)
  return [
    (
      (month_name(cohort), month - cohort),
      (
        1,
        int(month in active),
        revenue.get(month, Decimal(0)),
        frozenset(currencies.get(month, ())),
      ),
    )
    for month in range(cohort, max(month_index(as_of_us), cohort) + 1)
  ]


class _SumCells(beam.CombineFn):
  def create_accumulator(self):
    return 0, 0, Decimal(0), frozenset()

  def add_input(self, total, cell):
    return self.merge_accumulators([total, cell])

  def merge_accumulators(self, totals):
    size = active = 0
    revenue, currencies = Decimal(0), frozenset()
    for s, a, r, c in totals:
      size, active, revenue, currencies = size + s, active + a, revenue + r, currencies | c
    return size, active, revenue, currencies

  def extract_output(self, total):
    return total


def cohort_row(key: tuple[str, int], total) -> RetentionCohort:
  (cohort, months_since), (size, active, revenue, currencies) = key, total
  return RetentionCohort(
    cohort_month=cohort,
    months_since=months_since,
    cohort_size=size,
    customers_active=active,
    retention_rate=active / size,
    net_revenue=str(revenue) if len(currencies) <= 1 else None,
    currency=next(iter(currencies)) if len(currencies) == 1 else None,
  )


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


# (segment, recency scores, frequency scores): the usual RFM grid over R and F.
RFM_SEGMENTS = (
  ('champions', (5,), (4, 5)),
  ('loyal', (3, 4), (4, 5)),
  ('potential_loyalist', (4, 5), (2, 3)),
  ('new', (5,), (1,)),
  ('promising', (4,), (1,)),
  ('need_attention', (3,), (3,)),
  ('about_to_sleep', (3,), (1, 2)),
  ('cannot_lose', (1, 2), (5,)),
  ('at_risk', (1, 2), (3, 4)),
  ('hibernating', (1, 2), (1, 2)),
)


def rfm_segment(recency: int, frequency: int) -> str:
  for name, recencies, frequencies in RFM_SEGMENTS:
    if recency in recencies and frequency in frequencies:
      return name
  raise AssertionError(f'no segment for R={recency} F={frequency}')  # the grid covers 5x5


def quintile(value, ranked: list, higher_is_better: bool = True) -> int:
  """1 + how many of the ``ranked`` values (sorted) are worse than ``value``, in fifths:
  equal values score alike."""
  if higher_is_better:
    worse = bisect.bisect_left(ranked, value)
  else:
    worse = len(ranked) - bisect.bisect_right(ranked, value)
  return 1 + 5 * worse // len(ranked)


def with_rfm(customer: Customer, ranked: dict) -> Customer:
  """The customer with its RFM scores, given the sorted values of every buyer."""
  if customer.orders == 0:
    return customer
  recency = quintile(customer.recency_days, ranked['recency'], higher_is_better=False)
  frequency = quintile(customer.orders, ranked['frequency'])
  monetary = (
    quintile(Decimal(customer.monetary), ranked['monetary'])
    if customer.monetary is not None
    else None
  )
  return customer._replace(
    recency_score=recency,
    frequency_score=frequency,
    monetary_score=monetary,
    rfm_segment=rfm_segment(recency, frequency),
  )


class _RankBuyers(beam.CombineFn):
  """The sorted recency, frequency and monetary values of customers with an order."""

  def create_accumulator(self):
    return {'recency': [], 'frequency': [], 'monetary': []}

  def add_input(self, ranked, customer: Customer):
    if customer.orders > 0:
      ranked['recency'].append(customer.recency_days)
      ranked['frequency'].append(customer.orders)
      if customer.monetary is not None:
        ranked['monetary'].append(Decimal(customer.monetary))
    return ranked

  def merge_accumulators(self, accumulators):
    merged = self.create_accumulator()
    for ranked in accumulators:
      for name, values in ranked.items():
        merged[name].extend(values)
    return merged

  def extract_output(self, ranked):
    return {name: sorted(values) for name, values in ranked.items()}


def _latest(times: Iterable[int]) -> Optional[int]:
  return max(times, default=None)


def as_of_time(orders, sessions, as_of_us: Optional[int]):
  """A one-element PCollection: ``as_of_us``, else the latest order or session end."""
  if as_of_us is not None:
    return orders.pipeline | 'AsOf' >> beam.Create([as_of_us])
  return (
    (
      orders | 'OrderTimes' >> beam.Map(lambda o: o.order_time),
      sessions | 'SessionEnds' >> beam.Map(lambda s: s.session_end),
    )
    | 'AllTimes' >> beam.Flatten()
    | 'Latest' >> beam.CombineGlobally(_latest)
  )


def by_customer(orders, sessions):
  """(customer id, {'orders': [...], 'sessions': [...]}) of every known customer."""
  return {
    'orders': orders
    | 'WithCustomer' >> beam.Filter(lambda o: o.customer_id is not None)
    | 'KeyOrders' >> beam.Map(lambda o: (o.customer_id, o)),
    'sessions': sessions
    | 'WithUser' >> beam.Filter(lambda s: s.user_id is not None)
    | 'KeySessions' >> beam.Map(lambda s: (s.user_id, s)),
  } | 'ByCustomer' >> beam.CoGroupByKey()


class _PerCustomer(beam.PTransform):
  """A transform of (orders, sessions) per customer, as of ``as_of_us`` (None: the latest
  order or session end in the data)."""

  def __init__(self, as_of_us: Optional[int] = None):
    super().__init__()
    self._as_of_us = as_of_us

  def grouped(self, inputs):
    """(the orders and sessions of each customer, as_of as a one-element PCollection)."""
    orders, sessions = inputs
    return by_customer(orders, sessions), as_of_time(orders, sessions, self._as_of_us)


class BuildCustomers(_PerCustomer):
  """(orders, sessions) to Customers with their RFM scores."""

  def expand(self, inputs):
    grouped, as_of = self.grouped(inputs)
    customers = grouped | 'Features' >> beam.Map(
      lambda keyed, as_of_us: customer_features(
        keyed[0], keyed[1]['orders'], keyed[1]['sessions'], as_of_us
      ),
      as_of_us=pvalue.AsSingleton(as_of),
    ).with_output_types(Customer)
    ranked = customers | 'RankBuyers' >> beam.CombineGlobally(_RankBuyers())
    return customers | 'RFM' >> beam.Map(
      with_rfm, ranked=pvalue.AsSingleton(ranked)
    ).with_output_types(Customer)


class BuildRetentionCohorts(_PerCustomer):
  """(orders, sessions) to RetentionCohorts, up to the as_of month."""

  def expand(self, inputs):
    grouped, as_of = self.grouped(inputs)
    return (
      grouped
      | 'Cells'
      >> beam.FlatMap(
        lambda keyed, as_of_us: cohort_cells(keyed[1]['orders'], keyed[1]['sessions'], as_of_us),
        as_of_us=pvalue.AsSingleton(as_of),
      )
      | 'SumCells' >> beam.CombinePerKey(_SumCells())
      | 'Rows' >> beam.MapTuple(cohort_row).with_output_types(RetentionCohort)
    )
