"""Tables for recommenders: interactions, session sequences and item pairs.

All three learn from people: bot events (``is_bot``) are left out of
interactions and co-purchases, bot sessions (any bot event, as in the
sessions table) out of session_sequences and co-views.

- interactions: one row per (interaction key, product): counts of views,
  add-to-carts and purchases, first/last times, and an implicit-feedback
  weight (``interaction_weight``). The key is the user_id where the visitor
  logged in, else the session key (anonymous_id).
- session_sequences: per session, the product_ids of its product events
  (view, add to cart, purchase) in time order, repeats kept: the input of
  GRU4Rec, SKNN and the like. Sessions without product events are left out.
- item_pairs: unordered pairs (item_a < item_b) of products viewed in the
  same session (co_views) or bought in the same order (co_purchases: purchase
  events and order-history lines, cancellations left out), each counted once
  per session or order. Only the first ``max_items`` distinct products of a
  session or order count, so one endless session cannot dominate the pairs.

Category roll-ups (full path and top level) come from the product dimension
joined into the events and order lines.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Optional

import apache_beam as beam
from apache_beam import pvalue

from transforms.enrich.product_dimension import PRODUCT_LINE
from transforms.parse.event_types import ADD_TO_CART, PRODUCT_VIEW, PURCHASE
from transforms.records import (
  Event,
  Interaction,
  ItemPair,
  OrderLine,
  SessionSequence,
  typed_outputs,
)

INTERACTION_TYPES = (PRODUCT_VIEW, ADD_TO_CART, PURCHASE)
# Implicit feedback: a purchase says more than an add to cart, which says more
# than a view. weight = sum over types of weight[type] * count[type].
DEFAULT_WEIGHTS = {PRODUCT_VIEW: 1.0, ADD_TO_CART: 4.0, PURCHASE: 10.0}
DEFAULT_MAX_ITEMS = 50
SEQUENCES_TAG = 'session_sequences'
PATH_SEPARATOR = ' > '
# ((item_a, item_b), (co_views, co_purchases, category_path_a, category_path_b))
_PAIR_COUNT = beam.typehints.Tuple[beam.typehints.Tuple[str, str], beam.typehints.Any]


def parse_weights(text: str) -> dict[str, float]:
  """``product_view=1,add_to_cart=4,purchase=10`` to a weight per interaction type."""
  weights = dict(DEFAULT_WEIGHTS)
  for part in filter(None, (p.strip() for p in text.split(','))):
    name, sep, value = part.partition('=')
    if not sep or name.strip() not in DEFAULT_WEIGHTS:
      raise ValueError(
        f'interaction weight {part!r}: expected TYPE=NUMBER with TYPE one of '
        f'{", ".join(DEFAULT_WEIGHTS)}'
      )
    try:
      weights[name.strip()] = float(value)
    except ValueError:
      raise ValueError(f'interaction weight {part!r}: {value!r} is not a number') from None
  return weights


def interaction_weight(views: int, carts: int, purchases: int, weights: Mapping) -> float:
  return (
    weights[PRODUCT_VIEW] * views + weights[ADD_TO_CART] * carts + weights[PURCHASE] * purchases
  )


def top_category(path: Optional[str]) -> Optional[str]:
  return path.split(PATH_SEPARATOR, 1)[0] if path else None


def interaction_key(event: Event) -> str:
  return event.user_id or event.anonymous_id


def is_product_interaction(event: Event) -> bool:
  return event.event_type in INTERACTION_TYPES and bool(event.product_id) and not event.is_bot


def _later(a: Optional[int], b: Optional[int]) -> Optional[int]:
  return b if a is None else a if b is None else max(a, b)


def _max_text(a: Optional[str], b: Optional[str]) -> Optional[str]:
  return b if a is None else a if b is None else max(a, b)


class _InteractionFn(beam.CombineFn):
  """Counts and times of one (key, product); the accumulator is a plain list."""

  # views, carts, purchases, first, last, last_view, last_cart, last_purchase, category_path
  def create_accumulator(self):
    return [0, 0, 0, None, None, None, None, None, None]

  def add_input(self, acc, event: Event):
    slot = INTERACTION_TYPES.index(event.event_type)
    acc[slot] += 1
    t = event.event_time
    acc[3] = t if acc[3] is None else min(acc[3], t)
    acc[4] = _later(acc[4], t)
    acc[5 + slot] = _later(acc[5 + slot], t)
    acc[8] = _max_text(acc[8], event.category_path)
    return acc

  def merge_accumulators(self, accumulators):
    merged = self.create_accumulator()
    for acc in accumulators:
      for i in range(3):
        merged[i] += acc[i]
      if acc[3] is not None:
        merged[3] = acc[3] if merged[3] is None else min(merged[3], acc[3])
      for i in (4, 5, 6, 7):
        merged[i] = _later(merged[i], acc[i])
      merged[8] = _max_text(merged[8], acc[8])
    return merged

  def extract_output(self, acc):
    return acc


class BuildInteractions(beam.PTransform):
  """Events to one Interaction per (interaction key, product)."""

  def __init__(self, weights: Optional[Mapping[str, float]] = None):
    super().__init__()
    self._weights = dict(weights or DEFAULT_WEIGHTS)

  def expand(self, events):
    weights = self._weights

    def to_row(keyed) -> Interaction:
      (key, product), a = keyed
      return Interaction(
        key, product, a[0], a[1], a[2], interaction_weight(a[0], a[1], a[2], weights),
        a[3], a[4], a[5], a[6], a[7], a[8], top_category(a[8]),
      )  # fmt: skip

    return (
      events
      | 'ProductInteractions' >> beam.Filter(is_product_interaction)
      | 'KeyByVisitorAndProduct' >> beam.Map(lambda e: ((interaction_key(e), e.product_id), e))
      | 'CountAndTime' >> beam.CombinePerKey(_InteractionFn())
      | 'ToRows' >> beam.Map(to_row).with_output_types(Interaction)
    )


def distinct_first(items: Iterable[str], limit: int) -> list[str]:
  """The first ``limit`` distinct items, in order of first appearance."""
  seen: dict[str, None] = {}
  for item in items:
    if item not in seen:
      seen[item] = None
      if len(seen) == limit:
        break
  return list(seen)


def unordered_pairs(items: Sequence[str]) -> Iterator[tuple[str, str]]:
  """Each pair of distinct items once, smaller first."""
  return itertools.combinations(sorted(set(items)), 2)


def session_sequence(session_id: str, events: Iterable[Event]) -> Optional[SessionSequence]:
  """The session's product events in time order; None without any, or for a bot session."""
  ordered = sorted(events, key=lambda e: (e.event_time, e.event_id))
  items = [e for e in ordered if is_product_interaction(e)]
  if not items or any(e.is_bot for e in ordered):
    return None
  first = ordered[0]
  return SessionSequence(
    session_id,
    first.session_key,
    next((e.user_id for e in ordered if e.user_id), None),
    first.event_time,
    tuple(e.product_id for e in items),
    tuple(e.event_type for e in items),
    len(items),
  )


class _PerSession(beam.DoFn):
  """A session's events to its sequence and its co-view pairs (with categories)."""

  def __init__(self, max_items: int):
    self._max_items = max_items

  def process(self, grouped):
    session_id, events = grouped
    events = list(events)
    sequence = session_sequence(session_id, events)
    if sequence is None:
      return
    yield pvalue.TaggedOutput(SEQUENCES_TAG, sequence)
    ordered = sorted(events, key=lambda e: (e.event_time, e.event_id))
    categories = {e.product_id: e.category_path for e in ordered if e.product_id}
    viewed = distinct_first(
      (e.product_id for e in ordered if e.event_type == PRODUCT_VIEW and e.product_id),
      self._max_items,
    )
    for a, b in unordered_pairs(viewed):
      yield (a, b), (1, 0, categories.get(a), categories.get(b))


class _PerOrder(beam.DoFn):
  """An order's (product, category) to co-purchase pairs; the cap takes products by id."""

  def __init__(self, max_items: int):
    self._max_items = max_items

  def process(self, grouped):
    _, records = grouped
    ordered = sorted(records, key=lambda r: (r[0], r[1] or ''))
    categories = dict(ordered)
    bought = distinct_first((product for product, _ in ordered), self._max_items)
    for a, b in unordered_pairs(bought):
      yield (a, b), (0, 1, categories.get(a), categories.get(b))


def _bought_in_order(record) -> bool:
  if not record.product_id or not record.order_id:
    return False
  if isinstance(record, OrderLine):
    return record.line_type == PRODUCT_LINE and not record.is_cancellation and record.quantity > 0
  return record.event_type == PURCHASE and not record.is_bot


def _sum_pairs(values):
  views = purchases = 0
  cat_a = cat_b = None
  for v, p, a, b in values:
    views += v
    purchases += p
    cat_a, cat_b = _max_text(cat_a, a), _max_text(cat_b, b)
  return views, purchases, cat_a, cat_b


class BuildSessionTables(beam.PTransform):
  """Events (and order lines) to session_sequences and item_pairs.

  -> {'session_sequences': SessionSequences, 'item_pairs': ItemPairs}
  """

  def __init__(self, max_items: int = DEFAULT_MAX_ITEMS):
    super().__init__()
    if max_items < 2:
      raise ValueError('max items per session must be at least 2 to make pairs')
    self._max_items = max_items

  def expand(self, inputs):
    events, order_lines = inputs
    per_session = typed_outputs(
      events
      | 'WithSession' >> beam.Filter(lambda e: e.session_id is not None)
      | 'KeyBySession' >> beam.Map(lambda e: (e.session_id, e))
      | 'GroupBySession' >> beam.GroupByKey()
      | 'SequenceAndCoViews'
      >> beam.ParDo(_PerSession(self._max_items))
      .with_output_types(_PAIR_COUNT)
      .with_outputs(SEQUENCES_TAG, main='pairs'),
      **{SEQUENCES_TAG: SessionSequence},
    )
    purchases = (
      events | 'Purchases' >> beam.Filter(_bought_in_order),
      order_lines | 'BoughtLines' >> beam.Filter(_bought_in_order),
    )
    co_purchases = (
      purchases
      | 'FlattenBought' >> beam.Flatten()
      | 'KeyByOrder' >> beam.Map(lambda r: (r.order_id, (r.product_id, r.category_path)))
      | 'GroupByOrder' >> beam.GroupByKey()
      | 'CoPurchases' >> beam.ParDo(_PerOrder(self._max_items)).with_output_types(_PAIR_COUNT)
    )

    def to_pair(keyed) -> ItemPair:
      (a, b), (views, bought, cat_a, cat_b) = keyed
      return ItemPair(a, b, views, bought, cat_a, top_category(cat_a), cat_b, top_category(cat_b))

    pairs = (
      (per_session.pairs, co_purchases)
      | 'FlattenPairs' >> beam.Flatten()
      | 'CountPairs' >> beam.CombinePerKey(_sum_pairs)
      | 'ToPairRows' >> beam.Map(to_pair).with_output_types(ItemPair)
    )
    return {SEQUENCES_TAG: per_session[SEQUENCES_TAG], 'item_pairs': pairs}
