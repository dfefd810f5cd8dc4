"""Customers and retention cohorts: retention from orders and sessions."""

from __future__ import annotations

from decimal import Decimal

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import beam_pipeline
from tests.transforms.helpers import T0
from transforms.derived.retention import (
  RFM_SEGMENTS,
  BuildCustomers,
  BuildRetentionCohorts,
  cohort_cells,
  customer_features,
  quintile,
  rfm_segment,
)
from transforms.event_time import US_PER_DAY
from transforms.records import Order, RetentionCohort, SessionRow

DAY = US_PER_DAY


def order(order_id, customer, day, total, cancelled=False, currency='GBP'):
  values = dict.fromkeys(Order._fields)
  values.update(
    order_id=order_id,
    customer_id=customer,
    order_time=T0 + day * DAY,
    is_cancellation=cancelled,
    total_amount=total,
    currency=currency,
    line_count=1,
  )
  return Order(**values)


def session(session_id, user, day):
  values = dict.fromkeys(SessionRow._fields)
  values.update(
    session_id=session_id,
    session_key=f'anon-{user}',
    user_id=user,
    session_start=T0 + day * DAY,
    session_end=T0 + day * DAY + 60_000_000,
  )
  return SessionRow(**values)


def test_features_net_of_cancellations_with_windows_back_from_as_of():
  as_of = T0 + 100 * DAY
  orders = [
    order('o2', 'c1', 40, '30.00'),
    order('o1', 'c1', 10, '100.00'),
    order('c1x', 'c1', 41, '-30.00', cancelled=True),
  ]
  sessions = [session(f's{d}', 'c1', d) for d in (5, 20, 80, 95, 100)]
  row = customer_features('c1', orders, sessions, as_of)
  assert (row.orders, row.cancellations, row.monetary, row.currency) == (2, 1, '100.00', 'GBP')
  assert row.first_order_time == T0 + 10 * DAY and row.last_order_time == T0 + 41 * DAY
  assert row.recency_days == 59.0
  # Back from day 100: 7 days (93, 100] has 95, 100; 30 (70, 100] adds 80; 90 (10, 100] adds 20.
  assert (row.sessions_7d, row.sessions_30d, row.sessions_90d, row.sessions_total) == (2, 3, 4, 5)
  assert row.cohort_month == '2026-03'


def test_mixed_currencies_and_visitors_without_orders():
  mixed = customer_features(
    'c2', [order('a', 'c2', 1, '1'), order('b', 'c2', 2, '2', currency='EUR')], [], T0 + 3 * DAY
  )
  assert mixed.monetary is None and mixed.currency is None and mixed.orders == 2
  browser = customer_features('c3', [], [session('s', 'c3', 40)], T0 + 41 * DAY)
  assert (browser.orders, browser.recency_days, browser.monetary) == (0, None, None)
  assert browser.cohort_month == '2026-04'  # first session's month (T0 is 2026-03-01)


def test_build_customers_joins_orders_and_sessions_and_takes_as_of_from_the_data():
  orders = [order('o1', 'c1', 0, '10.00'), order('guest', None, 1, '5.00')]
  sessions = [session('s1', 'c1', 2), session('s2', 'c2', 3), session('anon', None, 3)]
  with beam_pipeline() as p:
    customers = (
      p | 'Orders' >> beam.Create(orders),
      p | 'Sessions' >> beam.Create(sessions),
    ) | BuildCustomers()
    assert_that(
      customers | beam.Map(lambda c: (c.customer_id, c.orders, c.sessions_total, c.as_of)),
      equal_to(
        [
          ('c1', 1, 1, T0 + 3 * DAY + 60_000_000),  # as_of: the latest session end
          ('c2', 0, 1, T0 + 3 * DAY + 60_000_000),
        ]
      ),
    )


def test_cohort_cells_run_from_the_first_order_month_to_as_of_with_activity_and_net_revenue():
  orders = [
    order('o1', 'c1', 10, '100.00'),  # 2026-03: the cohort
    order('o2', 'c1', 70, '30.00'),  # 2026-05
    order('o2x', 'c1', 71, '-30.00', cancelled=True),  # a cancellation: revenue, no activity
  ]
  sessions = [session('s0', 'c1', 2), session('s1', 'c1', 35)]  # 2026-03 and 2026-04
  cells = dict(cohort_cells(orders, sessions, T0 + 95 * DAY))  # as_of in 2026-06
  assert sorted(cells) == [('2026-03', n) for n in range(4)]
  assert cells[('2026-03', 0)] == (1, 1, Decimal('100.00'), frozenset({'GBP'}))
  assert cells[('2026-03', 1)][:3] == (1, 1, Decimal(0))  # a session only
  assert cells[('2026-03', 2)][:3] == (1, 1, Decimal('0.00'))  # net of the cancellation
  assert cells[('2026-03', 3)] == (1, 0, Decimal(0), frozenset())
  assert cohort_cells([], sessions, T0 + 95 * DAY) == []  # no order: in no cohort
  only_cancelled = dict(cohort_cells([orders[2]], [], T0 + 95 * DAY))
  assert only_cancelled == {
    ('2026-05', 0): (1, 0, Decimal('-30.00'), frozenset({'GBP'})),
    ('2026-05', 1): (1, 0, Decimal(0), frozenset()),
  }


def test_build_retention_cohorts_sums_customers_per_cell():
  orders = [
    order('a1', 'a', 0, '10.00'),
    order('b1', 'b', 1, '5.00'),
    order('b2', 'b', 35, '7.00'),
    order('c1', 'c', 2, '1.00', currency='EUR'),
  ]
  with beam_pipeline() as p:
    rows = (
      p | 'Orders' >> beam.Create(orders),
      p | 'Sessions' >> beam.Create([session('s', 'a', 36)]),
    ) | BuildRetentionCohorts()
    assert_that(
      rows,
      equal_to(
        [
          RetentionCohort('2026-03', 0, 3, 3, 1.0, None, None),  # GBP and EUR: no sum
          RetentionCohort('2026-03', 1, 3, 2, 2 / 3, '7.00', 'GBP'),
        ]
      ),
    )


def test_quintiles_score_ties_alike_and_put_the_best_fifth_at_5():
  ranked = sorted([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  assert [quintile(v, ranked) for v in ranked] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
  assert [quintile(v, ranked, higher_is_better=False) for v in ranked] == [
    5,
    5,
    4,
    4,
    3,
    3,
    2,
    2,
    1,
    1,
  ]
  ties = sorted([1, 1, 1, 1, 2])
  assert [quintile(v, ties) for v in ties] == [1, 1, 1, 1, 5]


def test_every_recency_and_frequency_score_has_exactly_one_segment():
  names = [rfm_segment(r, f) for r in range(1, 6) for f in range(1, 6)]
  assert len(names) == 25
  assert rfm_segment(5, 5) == 'champions' and rfm_segment(1, 1) == 'hibernating'
  assert rfm_segment(1, 5) == 'cannot_lose' and rfm_segment(5, 1) == 'new'
  assert {name for name, _, _ in RFM_SEGMENTS} == set(names)  # every segment reachable
