"""The output tables: one pyarrow schema each, defined once, and row conversion.

A table's rows are NamedTuples whose fields carry the schema's column names
(extra fields, such as an Event's raw ip, are not written). Money arrives as
decimal strings and is cast to decimal128; times are UTC microseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, Optional

import numpy as np
import pyarrow as pa

from transforms import event_batches
from transforms.event_time import US_PER_DAY, utc_day
from transforms.records import (
  Customer,
  DeadLetter,
  Event,
  Interaction,
  ItemPair,
  Order,
  OrderLine,
  RetentionCohort,
  SessionRow,
  SessionSequence,
)

TIME = pa.timestamp('us', tz='UTC')
MONEY = pa.decimal128(18, 4)
PARTITION_COLUMN = 'dt'

EVENTS_SCHEMA = pa.schema(
  [
    ('event_id', pa.string()),
    ('event_type', pa.string()),
    ('event_time', TIME),
    ('user_id', pa.string()),
    ('anonymous_id', pa.string()),
    ('session_id', pa.string()),
    ('product_id', pa.string()),
    ('category_id', pa.string()),
    ('category_path', pa.string()),
    ('brand', pa.string()),
    ('product_title', pa.string()),
    ('price', MONEY),
    ('currency', pa.string()),
    ('quantity', pa.int64()),
    ('order_id', pa.string()),
    ('page_url', pa.string()),
    ('referrer', pa.string()),
    ('browser', pa.string()),
    ('os', pa.string()),
    ('device_class', pa.string()),
    ('is_bot', pa.bool_()),
    ('country', pa.string()),
    ('channel', pa.string()),
    ('utm_source', pa.string()),
    ('utm_medium', pa.string()),
    ('utm_campaign', pa.string()),
    ('utm_term', pa.string()),
    ('utm_content', pa.string()),
    ('properties', pa.string()),
  ]
)

SESSIONS_SCHEMA = pa.schema(
  [
    ('session_id', pa.string()),
    ('session_key', pa.string()),
    ('user_id', pa.string()),
    ('session_start', TIME),
    ('session_end', TIME),
    ('duration_s', pa.float64()),
    ('event_count', pa.int64()),
    ('product_views', pa.int64()),
    ('add_to_carts', pa.int64()),
    ('purchases', pa.int64()),
    ('revenue', MONEY),
    ('currency', pa.string()),
    ('landing_page', pa.string()),
    ('exit_page', pa.string()),
    ('channel', pa.string()),
    ('device_class', pa.string()),
    ('country', pa.string()),
    ('is_bounce', pa.bool_()),
    ('is_bot', pa.bool_()),
  ]
)

ORDERS_SCHEMA = pa.schema(
  [
    ('order_id', pa.string()),
    ('customer_id', pa.string()),
    ('order_time', TIME),
    ('country', pa.string()),
    ('country_name', pa.string()),
    ('is_cancellation', pa.bool_()),
    ('line_count', pa.int64()),
    ('total_amount', MONEY),
    ('product_amount', MONEY),
    ('service_amount', MONEY),
    ('currency', pa.string()),
  ]
)

ORDER_LINES_SCHEMA = pa.schema(
  [
    ('order_id', pa.string()),
    ('line_no', pa.int64()),
    ('product_id', pa.string()),
    ('description', pa.string()),
    ('quantity', pa.int64()),
    ('unit_price', MONEY),
    ('amount', MONEY),
    ('currency', pa.string()),
    ('line_type', pa.string()),
    ('is_cancellation', pa.bool_()),
    ('order_time', TIME),
    ('customer_id', pa.string()),
    ('country', pa.string()),
    ('country_name', pa.string()),
    ('category_id', pa.string()),
    ('category_path', pa.string()),
    ('brand', pa.string()),
    ('product_title', pa.string()),
    ('source', pa.string()),
    # The line's place in its source: what line_no follows, so that a replay
    # can number a recovered line among the others as a fresh run would.
    ('position', pa.int64()),
  ]
)

DEAD_LETTER_SCHEMA = pa.schema(
  [
    ('payload', pa.binary()),
    ('reason', pa.string()),
    ('detail', pa.string()),
    ('step', pa.string()),
    ('source', pa.string()),
    # Text: a line number, or a Kinesis sequence number (up to 56 digits).
    ('position', pa.string()),
    ('event_time', TIME),
    ('input_time', TIME),
  ]
)


INTERACTIONS_SCHEMA = pa.schema(
  [
    ('interaction_key', pa.string()),
    ('product_id', pa.string()),
    ('views', pa.int64()),
    ('add_to_carts', pa.int64()),
    ('purchases', pa.int64()),
    ('weight', pa.float64()),
    ('first_time', TIME),
    ('last_time', TIME),
    ('last_view_time', TIME),
    ('last_cart_time', TIME),
    ('last_purchase_time', TIME),
    ('category_path', pa.string()),
    ('top_category', pa.string()),
  ]
)

ITEM_PAIRS_SCHEMA = pa.schema(
  [
    ('item_a', pa.string()),
    ('item_b', pa.string()),
    ('co_views', pa.int64()),
    ('co_purchases', pa.int64()),
    ('category_path_a', pa.string()),
    ('top_category_a', pa.string()),
    ('category_path_b', pa.string()),
    ('top_category_b', pa.string()),
  ]
)

SESSION_SEQUENCES_SCHEMA = pa.schema(
  [
    ('session_id', pa.string()),
    ('session_key', pa.string()),
    ('user_id', pa.string()),
    ('session_start', TIME),
    ('items', pa.list_(pa.string())),
    ('item_events', pa.list_(pa.string())),
    ('length', pa.int64()),
  ]
)

CUSTOMERS_SCHEMA = pa.schema(
  [
    ('customer_id', pa.string()),
    ('first_order_time', TIME),
    ('last_order_time', TIME),
    ('orders', pa.int64()),
    ('cancellations', pa.int64()),
    ('monetary', MONEY),
    ('currency', pa.string()),
    ('recency_days', pa.float64()),
    ('sessions_total', pa.int64()),
    ('sessions_7d', pa.int64()),
    ('sessions_30d', pa.int64()),
    ('sessions_90d', pa.int64()),
    ('last_session_time', TIME),
    ('cohort_month', pa.string()),
    ('as_of', TIME),
    ('recency_score', pa.int64()),
    ('frequency_score', pa.int64()),
    ('monetary_score', pa.int64()),
    ('rfm_segment', pa.string()),
  ]
)


RETENTION_COHORTS_SCHEMA = pa.schema(
  [
    ('cohort_month', pa.string()),
    ('months_since', pa.int64()),
    ('cohort_size', pa.int64()),
    ('customers_active', pa.int64()),
    ('retention_rate', pa.float64()),
    ('net_revenue', MONEY),
    ('currency', pa.string()),
  ]
)


def _unpartitioned(_row) -> None:
  return None


class TableSpec(NamedTuple):
  name: str
  schema: pa.Schema
  row_type: type
  # The dt partition of a row; None for snapshot tables written whole.
  partition_day: Callable[[NamedTuple], Optional[str]]
  # The time column partition_day reads, for rows that come as Arrow tables.
  time_column: Optional[str] = None

  @property
  def partitioned(self) -> bool:
    """Whether rows go to dt partitions (else the table is one snapshot)."""
    return self.partition_day is not _unpartitioned


EVENTS = TableSpec('events', EVENTS_SCHEMA, Event, lambda e: utc_day(e.event_time), 'event_time')
SESSIONS = TableSpec(
  'sessions', SESSIONS_SCHEMA, SessionRow, lambda s: utc_day(s.session_start), 'session_start'
)
DEAD_LETTER = TableSpec(
  'dead_letter',
  DEAD_LETTER_SCHEMA,
  DeadLetter,
  lambda d: utc_day(d.event_time if d.event_time is not None else d.input_time),
)

ORDERS = TableSpec('orders', ORDERS_SCHEMA, Order, lambda o: utc_day(o.order_time))
ORDER_LINES = TableSpec(
  'order_lines', ORDER_LINES_SCHEMA, OrderLine, lambda line: utc_day(line.order_time)
)

TABLES = {spec.name: spec for spec in (EVENTS, SESSIONS, ORDERS, ORDER_LINES, DEAD_LETTER)}

# Derived from the tables above (beam_pipelines/pipelines/derived_pipeline.py).
INTERACTIONS = TableSpec('interactions', INTERACTIONS_SCHEMA, Interaction, _unpartitioned)
ITEM_PAIRS = TableSpec('item_pairs', ITEM_PAIRS_SCHEMA, ItemPair, _unpartitioned)
SESSION_SEQUENCES = TableSpec(
  'session_sequences',
  SESSION_SEQUENCES_SCHEMA,
  SessionSequence,
  lambda s: utc_day(s.session_start),
)
CUSTOMERS = TableSpec('customers', CUSTOMERS_SCHEMA, Customer, _unpartitioned)
RETENTION_COHORTS = TableSpec(
  'retention_cohorts', RETENTION_COHORTS_SCHEMA, RetentionCohort, _unpartitioned
)
DERIVED_TABLES = {
  spec.name: spec
  for spec in (INTERACTIONS, ITEM_PAIRS, SESSION_SEQUENCES, CUSTOMERS, RETENTION_COHORTS)
}
ALL_TABLES = {**TABLES, **DERIVED_TABLES}


def column_indices(spec: TableSpec) -> list[int]:
  fields = spec.row_type._fields  # type: ignore[attr-defined]
  missing = [name for name in spec.schema.names if name not in fields]
  if missing:
    raise ValueError(f'{spec.row_type.__name__} lacks columns {missing} of table {spec.name}')
  return [fields.index(name) for name in spec.schema.names]


def to_arrow(
  spec: TableSpec, rows: Sequence[tuple], indices: Optional[list[int]] = None
) -> pa.Table:
  """Rows of ``spec.row_type`` as a pyarrow Table in the table's schema."""
  indices = indices if indices is not None else column_indices(spec)
  columns = list(zip(*rows, strict=True)) if rows else [()] * len(spec.row_type._fields)  # type: ignore[attr-defined]
  arrays = []
  for field, index in zip(spec.schema, indices, strict=True):
    values = columns[index]
    if pa.types.is_decimal(field.type):
      arrays.append(pa.array(values, pa.string()).cast(field.type))
    else:
      arrays.append(pa.array(values, field.type))
  return pa.Table.from_arrays(arrays, schema=spec.schema)


def cast_to_schema(spec: TableSpec, table: pa.Table) -> pa.Table:
  """A table of ``spec.row_type`` records (event_batches form) in the table's schema."""
  columns = [
    table[field.name]
    if table.schema.field(field.name).type == field.type
    else table[field.name].cast(field.type)
    for field in spec.schema
  ]
  return pa.Table.from_arrays(columns, schema=spec.schema)


def split_by_day(spec: TableSpec, table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
  """(dt partition, its rows) of a table of ``spec.row_type`` records, as partition_day says."""
  if spec.time_column is None:
    raise ValueError(f'table {spec.name} takes rows, not Arrow tables')
  day_numbers = np.floor_divide(event_batches.as_numpy(table[spec.time_column]), US_PER_DAY)
  for number, rows in event_batches.split_by(table, day_numbers):
    yield utc_day(number * US_PER_DAY), rows
