"""Customers: retention features from orders and sessions."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import beam_pipeline
from tests.transforms.helpers import T0
from transforms.derived.retention import BuildCustomers, customer_features
from transforms.event_time import US_PER_DAY
from transforms.records import Order, SessionRow

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
