"""Interactions, session sequences and item pairs: the rules, and the transforms."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import beam_pipeline
from tests.transforms.helpers import MINUTE_US, T0, make_event
from transforms.derived.recommendations import (
  SEQUENCES_TAG,
  BuildInteractions,
  BuildSessionTables,
  distinct_first,
  interaction_weight,
  parse_weights,
  session_sequence,
  top_category,
  unordered_pairs,
)
from transforms.records import OrderLine

TENTS = 'Outdoor > Camping > Tents'


def ev(event_id, minute, product=None, event_type='product_view', session='s1', **fields):
  fields.setdefault('is_bot', False)
  return make_event(
    event_id,
    minute,
    event_type=event_type,
    product_id=product,
    session_id=session,
    category_path=TENTS if product else None,
    **fields,
  )


def order_line(order_id, product, quantity=1, cancelled=False, line_type='product'):
  values = dict.fromkeys(OrderLine._fields)
  values.update(
    order_id=order_id,
    product_id=product,
    quantity=quantity,
    is_cancellation=cancelled,
    line_type=line_type,
    category_path='Home',
  )
  return OrderLine(**values)


def test_weights_parse_with_defaults_and_refuse_unknown_types():
  assert parse_weights('') == {'product_view': 1.0, 'add_to_cart': 4.0, 'purchase': 10.0}
  assert parse_weights('purchase=20, product_view=0.5')['purchase'] == 20.0
  with pytest.raises(ValueError, match='search'):
    parse_weights('search=1')
  with pytest.raises(ValueError, match='not a number'):
    parse_weights('purchase=lots')
  assert interaction_weight(3, 1, 1, parse_weights('')) == 3 + 4 + 10


def test_small_rules():
  assert top_category(TENTS) == 'Outdoor' and top_category(None) is None
  assert distinct_first(['b', 'a', 'b', 'c', 'd'], 3) == ['b', 'a', 'c']
  assert list(unordered_pairs(['c', 'a', 'b', 'a'])) == [('a', 'b'), ('a', 'c'), ('b', 'c')]


def test_a_sequence_keeps_repeats_in_time_order_and_skips_bots_and_productless():
  events = [ev('e3', 3, 'p2'), ev('e1', 1, 'p1'), ev('e2', 2), ev('e4', 4, 'p1', 'add_to_cart')]
  sequence = session_sequence('s1', events)
  assert sequence.items == ('p1', 'p2', 'p1') and sequence.length == 3
  assert sequence.item_events == ('product_view', 'product_view', 'add_to_cart')
  assert sequence.session_start == T0 + MINUTE_US  # the session's first event, product or not
  assert session_sequence('s1', [ev('e2', 2)]) is None
  assert session_sequence('s1', [*events, ev('bot', 5, 'p3', is_bot=True)]) is None


def test_build_interactions_counts_times_and_weighs_per_visitor_and_product():
  events = [
    ev('v1', 1, 'p1'),
    ev('v2', 2, 'p1'),
    ev('c1', 3, 'p1', 'add_to_cart'),
    ev('b1', 4, 'p1', 'purchase', order_id='o1'),
    ev('other', 5, 'p2', key='someone-else'),
    ev('bot', 6, 'p1', is_bot=True),
    ev('search', 7, None, 'search'),
  ]
  with beam_pipeline() as p:
    rows = p | beam.Create(events) | BuildInteractions()
    assert_that(
      rows | beam.Map(lambda r: (r.interaction_key, r.product_id, r[2:6], r.top_category)),
      equal_to(
        [
          ('a1', 'p1', (2, 1, 1, 2 + 4 + 10.0), 'Outdoor'),
          ('someone-else', 'p2', (1, 0, 0, 1.0), 'Outdoor'),
        ]
      ),
    )


def test_pairs_count_once_per_session_and_order_and_cap_long_sessions():
  events = [
    # Session s1 views p1, p2, p1 again, p3: pairs once each despite the repeat.
    ev('a', 1, 'p1'),
    ev('b', 2, 'p2'),
    ev('c', 3, 'p1'),
    ev('d', 4, 'p3'),
    # Session s2 views p1 and p2 too, and buys both in order o1.
    ev('e', 5, 'p1', session='s2'),
    ev('f', 6, 'p2', session='s2'),
    ev('g', 7, 'p1', 'purchase', session='s2', order_id='o1'),
    ev('h', 8, 'p2', 'purchase', session='s2', order_id='o1'),
    # A long session: only its first 3 distinct products count (max_items=3).
    *[ev(f'l{n}', 10 + n, f'q{n}', session='long') for n in range(6)],
  ]
  lines = [
    order_line('o1', 'p2'),  # the same order from the order history: still once
    order_line('o2', 'p1'),
    order_line('o2', 'p3'),
    order_line('o3', 'p1', quantity=-1, cancelled=True),
    order_line('o3', 'p3', quantity=-1, cancelled=True),
    order_line('o2', 'POST', line_type='service'),
  ]
  with beam_pipeline() as p:
    tables = (p | 'Events' >> beam.Create(events), p | 'Lines' >> beam.Create(lines)) | (
      BuildSessionTables(max_items=3)
    )
    assert_that(
      tables['item_pairs'] | beam.Map(lambda r: r[:4]),
      equal_to(
        [
          ('p1', 'p2', 2, 1),
          ('p1', 'p3', 1, 1),
          ('p2', 'p3', 1, 0),
          ('q0', 'q1', 1, 0),
          ('q0', 'q2', 1, 0),
          ('q1', 'q2', 1, 0),
        ]
      ),
      label='pairs',
    )
    assert_that(
      tables[SEQUENCES_TAG] | beam.Map(lambda s: (s.session_id, s.length)),
      equal_to([('s1', 4), ('s2', 4), ('long', 6)]),
      label='sequences',
    )
