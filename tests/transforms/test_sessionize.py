import random
from decimal import Decimal

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import beam_pipeline
from tests.transforms.helpers import MINUTE_US, T0, make_event, table_rows
from transforms.event_batches import from_batch, to_batch
from transforms.records import EVENTS_TAG, SESSIONS_TAG, Event, SessionRow
from transforms.sessions.sessionize import (
  Sessionize,
  make_session_id,
  session_start_indices,
  sessionize_key,
  sessionize_table,
)

GAP = 30 * MINUTE_US
DAY = 24 * 60 * MINUTE_US


def test_a_gap_of_exactly_the_session_gap_starts_a_new_session():
  times = [0, GAP - 1, 2 * GAP - 2, 3 * GAP - 2]  # gaps: GAP-1, GAP-1, GAP
  assert session_start_indices(times, GAP, DAY) == [0, 3]
  assert session_start_indices([0, GAP], GAP, DAY) == [0, 1]


def test_sessions_are_cut_at_max_duration_from_their_first_event():
  times = list(range(0, 30 * 60 * MINUTE_US, 20 * MINUTE_US))  # every 20 min for 30 h
  starts = session_start_indices(times, GAP, DAY)
  assert starts == [0, 72]  # the event at exactly 24 h starts the second session
  assert times[72] - times[0] == DAY


def reference_sessions(times, gap, max_duration):
  """The rule of docs/design.md, written as plainly as possible."""
  sessions = []
  for t in times:
    if sessions and t - sessions[-1][-1] < gap and t - sessions[-1][0] < max_duration:
      sessions[-1].append(t)
    else:
      sessions.append([t])
  return sessions


@settings(max_examples=200, deadline=None)
@given(
  st.lists(st.integers(0, 10 * DAY), max_size=60),
  st.integers(1, 3 * 60 * MINUTE_US),
  st.integers(1, 2 * DAY),
)
def test_start_indices_agree_with_the_plain_rule(times, gap, max_duration):
  times = sorted(times)
  starts = session_start_indices(times, gap, max_duration)
  assert [times[i] for i in starts] == [s[0] for s in reference_sessions(times, gap, max_duration)]


def test_session_ids_are_deterministic_and_key_specific():
  assert make_session_id('a1', T0) == make_session_id('a1', T0)
  assert make_session_id('a1', T0) != make_session_id('a2', T0)
  assert make_session_id('a1', T0) != make_session_id('a1', T0 + 1)


def test_input_order_does_not_matter_and_ties_break_by_event_id():
  events = [make_event('e3', 0), make_event('e1', 0), make_event('e2', 45), make_event('e0', 50)]
  shuffled = events[:]
  random.Random(1).shuffle(shuffled)
  first = list(sessionize_key('a1', events, GAP, DAY))
  second = list(sessionize_key('a1', shuffled, GAP, DAY))
  assert first == second
  assert [[e.event_id for e in members] for _, members in first] == [['e1', 'e3'], ['e2', 'e0']]
  assert all(e.session_id == s.session_id for s, members in first for e in members)


def test_session_summary():
  events = [
    make_event(
      'e1',
      0,
      channel='organic_search',
      device_class='mobile',
      country='GB',
      page_url='/landing',
      user_id=None,
    ),
    make_event('e2', 1, event_type='product_view', page_url='/p/1', user_id='C-1'),
    make_event('e3', 2, event_type='add_to_cart'),
    make_event(
      'e4', 3, event_type='purchase', price='19.99', quantity=2, currency='EUR', page_url='/thanks'
    ),
    make_event('e5', 4, event_type='purchase', price='0.02', currency='EUR', is_bot=True),
  ]
  ((row, _),) = sessionize_key('a1', events, GAP, DAY)
  assert (row.session_start, row.session_end, row.duration_s) == (T0, T0 + 4 * MINUTE_US, 240.0)
  assert (row.event_count, row.product_views, row.add_to_carts, row.purchases) == (5, 1, 1, 2)
  assert (row.revenue, row.currency) == ('40.00', 'EUR')
  assert (row.landing_page, row.exit_page, row.user_id) == ('/landing', '/thanks', 'C-1')
  assert (row.channel, row.device_class, row.country) == ('organic_search', 'mobile', 'GB')
  assert (row.is_bounce, row.is_bot) == (False, True)
  ((single, _),) = sessionize_key('a1', events[:1], GAP, DAY)
  assert single.is_bounce


def test_revenue_in_several_currencies_is_not_added_up():
  events = [
    make_event('e1', 0, event_type='purchase', price='1', currency='EUR'),
    make_event('e2', 1, event_type='purchase', price='1', currency='USD'),
  ]
  ((row, _),) = sessionize_key('a1', events, GAP, DAY)
  assert (row.revenue, row.currency) == (None, None)


@pytest.mark.parametrize('threads', [1, 2])
def test_pipeline_sessionizes_every_key(threads):
  events = [
    make_event('a', 0, key='k1'),
    make_event('b', 10, key='k1'),
    make_event('c', 45, key='k1'),
    make_event('d', 0, key='k2', user_id='u2'),
    make_event('e', 5, key=None, user_id='u3'),
  ]
  with beam_pipeline() as p:
    out = (
      p
      | beam.Create(events)
      | Sessionize(gap_s=1800, max_duration_s=86400, num_buckets=3, threads=threads)
    )
    assert_that(
      out[EVENTS_TAG]
      | 'EventRows' >> table_rows(Event)
      | 'EventSessions' >> beam.Map(lambda e: (e.event_id, e.session_id)),
      equal_to(
        [
          ('a', make_session_id('k1', T0)),
          ('b', make_session_id('k1', T0)),
          ('c', make_session_id('k1', T0 + 45 * MINUTE_US)),
          ('d', make_session_id('k2', T0)),
          ('e', make_session_id('u3', T0 + 5 * MINUTE_US)),
        ]
      ),
      label='events',
    )
    assert_that(
      out[SESSIONS_TAG]
      | 'SessionRows' >> table_rows(SessionRow)
      | 'SessionKeys' >> beam.Map(lambda s: (s.session_key, s.event_count)),
      equal_to([('k1', 2), ('k1', 1), ('k2', 1), ('u3', 1)]),
      label='sessions',
    )


def plain_summary(session_key, events):
  """A session's row, computed the plainest way: a reference for sessionize_table."""
  purchases = [e for e in events if e.event_type == 'purchase' and e.price is not None]
  currencies = {e.currency for e in purchases}
  total = sum((Decimal(e.price) * (e.quantity or 1) for e in purchases), Decimal(0))
  pages = [e.page_url for e in events if e.page_url]
  return (
    session_key,
    next((e.user_id for e in events if e.user_id), None),
    events[0].event_time,
    events[-1].event_time,
    len(events),
    sum(e.event_type == 'product_view' for e in events),
    sum(e.event_type == 'add_to_cart' for e in events),
    len([e for e in events if e.event_type == 'purchase']),
    None if len(currencies) > 1 else total,
    currencies.pop() if len(currencies) == 1 else None,
    pages[0] if pages else None,
    pages[-1] if pages else None,
    (events[0].channel, events[0].device_class, events[0].country),
    len(events) == 1,
    any(e.is_bot for e in events),
  )


def summary_of(row):
  revenue = None if row.revenue is None else Decimal(row.revenue)
  return (
    row.session_key,
    row.user_id,
    row.session_start,
    row.session_end,
    row.event_count,
    row.product_views,
    row.add_to_carts,
    row.purchases,
    revenue,
    row.currency,
    row.landing_page,
    row.exit_page,
    (row.channel, row.device_class, row.country),
    row.is_bounce,
    row.is_bot,
  )


random_events = st.lists(
  st.builds(
    lambda key, minute, kind, price, currency, quantity, page, user, bot, channel: (
      key,
      dict(
        event_time=T0 + minute * MINUTE_US,
        event_type=kind,
        price=price,
        currency=currency,
        quantity=quantity,
        page_url=page,
        user_id=user,
        is_bot=bot,
        channel=channel,
      ),
    ),
    st.sampled_from(['k1', 'k2', 'k3']),
    st.integers(0, 12 * 60),  # dense: exact gaps and max durations occur
    st.sampled_from(['page_view', 'product_view', 'add_to_cart', 'purchase']),
    st.sampled_from([None, '1.5', '19.99', '3']),
    st.sampled_from(['EUR', 'USD']),
    st.sampled_from([None, 1, 3]),
    st.sampled_from([None, '/a', '/b']),
    st.sampled_from([None, 'u1', 'u2']),
    st.sampled_from([None, True, False]),
    st.sampled_from([None, 'email', 'direct']),
  ),
  max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(random_events, st.integers(1, 90), st.integers(1, 8 * 60))
def test_the_table_rule_gives_the_plain_rule_for_every_key(specs, gap_minutes, max_minutes):
  events = [make_event(f'e{n}', 0, key=key, **fields) for n, (key, fields) in enumerate(specs)]
  gap, max_duration = gap_minutes * MINUTE_US, max_minutes * MINUTE_US
  table = pa.Table.from_batches([to_batch(Event, events)]) if events else None
  expected_sessions, expected_ids = [], {}
  for key in sorted({e.session_key for e in events}):
    ordered = sorted(
      (e for e in events if e.session_key == key), key=lambda e: (e.event_time, e.event_id)
    )
    for session in reference_sessions_of(ordered, gap, max_duration):
      expected_sessions.append(plain_summary(key, session))
      for e in session:
        expected_ids[e.event_id] = make_session_id(key, session[0].event_time)
  if table is None:
    return
  with_ids, sessions = sessionize_table(table, gap, max_duration)
  rows = from_batch(SessionRow, sessions)
  assert sorted(map(summary_of, rows), key=repr) == sorted(expected_sessions, key=repr)
  assert dict(
    zip(with_ids['event_id'].to_pylist(), with_ids['session_id'].to_pylist(), strict=True)
  ) == (expected_ids)
  assert {r.session_id for r in rows} == set(expected_ids.values())


def reference_sessions_of(ordered, gap, max_duration):
  sessions = []
  for e in ordered:
    if (
      sessions
      and e.event_time - sessions[-1][-1].event_time < gap
      and e.event_time - sessions[-1][0].event_time < max_duration
    ):
      sessions[-1].append(e)
    else:
      sessions.append([e])
  return sessions
