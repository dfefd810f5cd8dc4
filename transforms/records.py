"""The typed records that flow between shopstream's transforms.

Each record is a ``NamedTuple`` of Beam primitives with a RecordCoder, so it
crosses a stage boundary as a compact field tuple, never as a pickled object.
Money travels as a canonical decimal string and becomes ``decimal128`` only
in the Parquet sink.

Times are integers: UTC microseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Optional

import numpy as np
import pyarrow as pa
from apache_beam import coders

from transforms.record_coder import LineChunkCoder, RecordCoder

# Tags of the tagged outputs that every parser and stage shares.
DEAD_LETTER_TAG = 'dead_letter'
EVENTS_TAG = 'events'
SESSIONS_TAG = 'sessions'
ORDERS_TAG = 'orders'
ORDER_LINES_TAG = 'order_lines'
PRODUCTS_TAG = 'products'
CATEGORIES_TAG = 'categories'


def typed_outputs(outputs, **tagged_types):
  """``outputs`` (a ParDo's ``DoOutputsTuple``) with its tagged outputs typed.

  Beam 2.62 types every tagged output ``Any`` (so pickled) whatever
  ``with_output_types`` says; typing them gives them their records' coders.
  """
  for tag, type_hint in tagged_types.items():
    outputs[tag].element_type = type_hint
  return outputs


class RawRecord(NamedTuple):
  """One unparsed record of an input: a line of a file, a Kinesis record."""

  source: str  # "KIND:PATH", the run summary's key for this input
  position: int  # 1-based line number (or record sequence) in the source
  payload: bytes
  input_time: int  # when the input was produced (file mtime); dead-letter day


class Event(NamedTuple):
  """A canonical event; the first ``len(EVENT_COLUMNS)`` fields are its row.

  Parsers fill the identity, time and commerce fields plus ``ip`` and
  ``user_agent``; enrichment fills the derived columns and clears ``ip`` and
  ``user_agent`` (raw PII never reaches a table); sessionization fills
  ``session_id``.
  """

  event_id: str
  event_type: str
  event_time: int
  user_id: Optional[str]
  anonymous_id: Optional[str]
  session_id: Optional[str]
  product_id: Optional[str]
  category_id: Optional[str]
  category_path: Optional[str]
  brand: Optional[str]
  product_title: Optional[str]
  price: Optional[str]
  currency: Optional[str]
  quantity: Optional[int]
  order_id: Optional[str]
  page_url: Optional[str]
  referrer: Optional[str]
  browser: Optional[str]
  os: Optional[str]
  device_class: Optional[str]
  is_bot: Optional[bool]
  country: Optional[str]
  channel: Optional[str]
  utm_source: Optional[str]
  utm_medium: Optional[str]
  utm_campaign: Optional[str]
  utm_term: Optional[str]
  utm_content: Optional[str]
  properties: Optional[str]  # JSON object text, keys sorted
  # Not a column: where this copy was read (a file in batch, a stream in
  # streaming) would make the modes' rows differ. For accounting.
  source: str
  # Raw inputs of enrichment; never written.
  ip: Optional[str] = None
  user_agent: Optional[str] = None

  @property
  def session_key(self) -> str:
    """The key sessions are built on: the device when known, else the user."""
    return self.anonymous_id or self.user_id  # type: ignore[return-value]


EVENT_COLUMNS: tuple[str, ...] = Event._fields[: Event._fields.index('source')]


class SessionRow(NamedTuple):
  session_id: str
  session_key: str
  user_id: Optional[str]
  session_start: int
  session_end: int
  duration_s: float
  event_count: int
  product_views: int
  add_to_carts: int
  purchases: int
  revenue: Optional[str]
  currency: Optional[str]
  landing_page: Optional[str]
  exit_page: Optional[str]
  channel: Optional[str]
  device_class: Optional[str]
  country: Optional[str]
  is_bounce: bool
  is_bot: bool


class OrderLine(NamedTuple):
  """One line of a legacy order export; amounts are decimal strings."""

  order_id: str
  line_no: Optional[int]  # numbered within the order once its lines are together
  product_id: Optional[str]
  description: Optional[str]
  quantity: int  # negative on cancellations
  unit_price: str
  amount: str  # quantity * unit_price
  currency: str
  line_type: str  # product | service | adjustment (see parse_orders.SERVICE_CODES)
  is_cancellation: bool
  order_time: int
  customer_id: Optional[str]
  country: Optional[str]  # ISO 3166-1 alpha-2 when the name is known
  country_name: Optional[str]  # as exported
  category_id: Optional[str]
  category_path: Optional[str]
  brand: Optional[str]
  product_title: Optional[str]
  source: str
  position: int  # line in the source file: fixes line_no order


class Order(NamedTuple):
  order_id: str
  customer_id: Optional[str]
  order_time: int
  country: Optional[str]
  country_name: Optional[str]
  is_cancellation: bool
  line_count: int
  total_amount: str  # net of the lines' signs: negative for a cancellation
  product_amount: str
  service_amount: str  # postage, fees, manual adjustments, discounts
  currency: str


class Product(NamedTuple):
  """A row of the product catalog export."""

  product_id: str
  product_title: Optional[str]
  brand: Optional[str]
  category_id: Optional[str]
  price: Optional[str]
  currency: Optional[str]
  source: str
  position: int


class Category(NamedTuple):
  """A line of the product taxonomy: ``id - A > B > C``."""

  category_id: str
  category_path: str  # 'A > B > C'
  source: str
  position: int


class DeadLetter(NamedTuple):
  """A record that could not be used, with everything needed to replay it."""

  payload: bytes  # the raw bytes as read, even when they are not UTF-8
  reason: str  # comma-separated reason codes, e.g. "missing_identity"
  detail: str  # a human-readable sentence per problem
  step: str  # the transform that rejected it
  source: str
  position: str  # line number, Kinesis sequence number (beyond int64), event_id if late
  event_time: Optional[int]  # the record's own time when it could be read
  input_time: int  # fallback partition day: when the input was produced


class Interaction(NamedTuple):
  """What one visitor did with one product: the implicit feedback of a recommender."""

  interaction_key: str  # user_id, else the session key (anonymous_id)
  product_id: str
  views: int
  add_to_carts: int
  purchases: int
  weight: float  # see recommendations.interaction_weight
  first_time: int
  last_time: int
  last_view_time: Optional[int]
  last_cart_time: Optional[int]
  last_purchase_time: Optional[int]
  category_path: Optional[str]
  top_category: Optional[str]


class ItemPair(NamedTuple):
  """Two products seen together in sessions or bought together in orders (item_a < item_b)."""

  item_a: str
  item_b: str
  co_views: int  # sessions in which both were viewed
  co_purchases: int  # orders in which both were bought
  category_path_a: Optional[str]
  top_category_a: Optional[str]
  category_path_b: Optional[str]
  top_category_b: Optional[str]


class SessionSequence(NamedTuple):
  """The products of one session in time order: input of session-based recommenders."""

  session_id: str
  session_key: str
  user_id: Optional[str]
  session_start: int
  items: tuple  # product_ids in time order, repeats kept
  item_events: tuple  # the event_type of each item
  length: int


class Customer(NamedTuple):
  """Retention features of one customer as of the run's end."""

  customer_id: str
  first_order_time: Optional[int]
  last_order_time: Optional[int]
  orders: int  # orders that are not cancellations
  cancellations: int
  monetary: Optional[str]  # net of cancellations; None when currencies are mixed
  currency: Optional[str]
  recency_days: Optional[float]  # as_of - last order
  sessions_total: int
  sessions_7d: int
  sessions_30d: int
  sessions_90d: int
  last_session_time: Optional[int]
  cohort_month: Optional[str]  # YYYY-MM of the first order, else of the first session
  as_of: int
  # RFM quintile scores (5 best) among customers with an order, and their segment.
  recency_score: Optional[int] = None
  frequency_score: Optional[int] = None
  monetary_score: Optional[int] = None
  rfm_segment: Optional[str] = None


class RetentionCohort(NamedTuple):
  """One cell of the cohort retention table: a first-order month, some months on."""

  cohort_month: str  # YYYY-MM of the customers' first order
  months_since: int  # 0: the cohort's own month
  cohort_size: int
  customers_active: int  # with an order (not a cancellation) or a session that month
  retention_rate: float  # customers_active / cohort_size
  net_revenue: Optional[str]  # the month's order totals net of cancellations; None if mixed
  currency: Optional[str]


class LineChunk(NamedTuple):
  """Consecutive records of one input as one Arrow array, handed on as one element
  (ReadLines): lines, or CSV records, some of which may span lines.

  No Python object per record: the chunk parsers read ``lines`` as a column,
  and only the records they leave to a line parser become RawRecords.
  """

  source: str
  first_position: int  # the position of lines[0]
  input_time: int
  lines: pa.BinaryArray
  # Each record's position less first_position, when a record spans lines (CSV);
  # None when the positions follow one by one.
  line_offsets: Optional[pa.Int64Array] = None

  @classmethod
  def of_records(cls, records: Sequence[RawRecord]) -> LineChunk:
    """The chunk of RawRecords of one source, in order (as tests build them)."""
    first = records[0] if records else RawRecord('', 1, b'', 0)
    offsets = [r.position - first.position for r in records]
    return cls(
      first.source,
      first.position,
      first.input_time,
      pa.array([r.payload for r in records], pa.binary()),
      None if offsets == list(range(len(records))) else pa.array(offsets, pa.int64()),
    )

  def positions(self) -> np.ndarray:
    """The position of each record."""
    if self.line_offsets is None:
      return np.arange(len(self.lines), dtype=np.int64) + self.first_position
    return self.line_offsets.to_numpy() + self.first_position

  def records(self, indices: Optional[Iterable[int]] = None) -> list[RawRecord]:
    """The records at ``indices`` (default: all), as RawRecords."""
    if indices is None:
      payloads, positions = self.lines.to_pylist(), self.positions().tolist()
    else:
      indices = list(indices)
      if not indices:
        return []
      payloads = self.lines.take(pa.array(indices, pa.int64())).to_pylist()
      positions = self.positions()[indices].tolist()
    return [
      RawRecord(self.source, position, payload, self.input_time)
      for position, payload in zip(positions, payloads, strict=True)
    ]


for _record in (
  RawRecord,
  Event,
  SessionRow,
  OrderLine,
  Order,
  Product,
  Category,
  DeadLetter,
  Interaction,
  ItemPair,
  SessionSequence,
  Customer,
):
  coders.registry.register_coder(_record, RecordCoder)
coders.registry.register_coder(LineChunk, LineChunkCoder)
