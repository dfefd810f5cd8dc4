"""The orders-csv parser a chunk of records at a time, as Arrow columns.

Most records of an order export are plain: printable ASCII, no quotes, eight
fields. Those are cut at their commas in one Arrow kernel, and the rules of the
line parser (parse_orders.py) run once per distinct value: dates, quantities
with prices (and so amounts), stock codes, customers, countries. A record the
rules would reject, filter or that is not plain (quoted fields, a line break in
one, other bytes, the header) goes to the line parser, which gives its outcome;
so a record's outcome does not depend on the path it took (tests compare the
two paths record by record).

    chunks | ParseOrdersCsv(pseudonymizer, 'Europe/London', 'GBP', now_us)
    -> {ORDER_LINES_TAG: OrderLines, DEAD_LETTER_TAG: DeadLetters}

    parser = OrdersCsvChunkParser(pseudonymizer, 'Europe/London', 'GBP', now_us)
    chunk = parser.parse_chunk(line_chunk)   # a LineChunk of one source
    chunk.table, chunk.filtered, chunk.rest    # rest: for parser(record)
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.dead_letters import RecordError
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.event_batches import as_numpy, from_batch, map_distinct, rows_of, schema_of
from transforms.event_time import EventTimeError, check_plausible
from transforms.parse.countries import iso_country
from transforms.parse.line_chunks import ParsedChunk, plain_lines
from transforms.parse.parse_line_chunks import ParseLineChunks
from transforms.parse.parse_orders import (
  COLUMNS,
  MAX_QUANTITY,
  PRODUCT,
  SERVICE_CODES,
  OrdersCsvParser,
  clean_customer_id,
  money,
  parse_amount,
  parse_local_time,
)
from transforms.parse.parse_orders import STEP as ORDERS_CSV_STEP
from transforms.records import DEAD_LETTER_TAG, ORDER_LINES_TAG, LineChunk, OrderLine

_PLAIN_RECORD = '^[^",]*' + ',[^",]*' * (len(COLUMNS) - 1) + '$'


def _strip(values: pa.Array) -> pa.Array:
  """str.strip of printable ASCII: only spaces are white."""
  return pc.utf8_trim(values, characters=' ')


def _empty_as_null(values: pa.Array) -> pa.Array:
  return pc.if_else(pc.equal(values, ''), None, values)


class OrdersCsvChunkParser(OrdersCsvParser):
  """OrdersCsvParser with ``parse_chunk``: plain records as columns, the rest by record."""

  def order_time(self, text: str) -> Optional[int]:
    """The UTC microseconds of an InvoiceDate; None if the line parser would object."""
    try:
      time_us = parse_local_time(text, self.tz)
      check_plausible(time_us, self.now_us)
      return time_us
    except EventTimeError:
      return None

  @staticmethod
  def quantity_and_money(quantity_text: str, price_text: str) -> tuple:
    """(quantity, unit price, amount, whether the price is negative); Nones if either
    field would be a dead letter."""
    try:
      quantity = int(quantity_text.strip())
      unit_price = parse_amount('UnitPrice', price_text)
    except (ValueError, RecordError):
      return None, None, None, None
    if abs(quantity) > MAX_QUANTITY:
      return None, None, None, None
    return quantity, money(unit_price), money(unit_price * quantity), unit_price < Decimal(0)

  def customer(self, text: str) -> Optional[str]:
    return self.pseudonymizer.identity(clean_customer_id(text))

  def parse_chunk(self, chunk: LineChunk) -> ParsedChunk:
    """The order lines of the chunk's plain records, and its other records as RawRecords."""
    payloads = chunk.lines
    candidates = np.flatnonzero(plain_lines(payloads))
    lines = rows_of(payloads, candidates).cast(pa.string())
    plain = as_numpy(pc.match_substring_regex(lines, _PLAIN_RECORD))
    candidates = candidates[plain]
    # Eight fields a record: flattened, field k of every record is every eighth value.
    values = pc.list_flatten(pc.split_pattern(rows_of(lines, np.flatnonzero(plain)), ','))
    width = len(COLUMNS)
    invoice, stock, description, quantity_text, date, price, customer, country = (
      values.take(pa.array(np.arange(k, len(values), width))) for k in range(width)
    )

    invoice_no = _strip(invoice)
    invoice_length = as_numpy(pc.utf8_length(invoice_no))
    is_cancellation = pc.equal(pc.utf8_upper(pc.utf8_slice_codeunits(invoice_no, 0, 1)), 'C')
    cancellation = as_numpy(is_cancellation)
    code = _strip(stock)
    line_type = map_distinct(
      [code], lambda c: SERVICE_CODES.get(c.upper(), PRODUCT), [pa.string()]
    )[0]
    order_time = map_distinct([date], self.order_time, [pa.int64()])[0]
    quantity, unit_price, amount, negative_price = map_distinct(
      [quantity_text, price],
      self.quantity_and_money,
      [pa.int64(), pa.string(), pa.string(), pa.bool_()],
    )
    quantities = as_numpy(quantity.fill_null(0))
    # Every rule of parse_orders.order_line that rejects or filters a line; those lines
    # are left to the line parser for their outcome. So is the header: "InvoiceDate"
    # is no date.
    keep = (
      as_numpy(order_time.is_valid())
      & as_numpy(quantity.is_valid())
      & (invoice_length > 0)
      & ~(cancellation & (invoice_length == 1))
      & ~(cancellation & (quantities > 0))
      & ~(~cancellation & (quantities < 0))
      & ~(as_numpy(negative_price.fill_null(False)) & as_numpy(pc.equal(line_type, PRODUCT)))
    )
    rows = pa.array(np.flatnonzero(keep))
    country_name = _empty_as_null(_strip(country.take(rows)))
    columns = {
      'order_id': invoice_no.take(rows),
      'product_id': _empty_as_null(code.take(rows)),
      'description': _empty_as_null(_strip(description.take(rows))),
      'quantity': quantity.take(rows),
      'unit_price': unit_price.take(rows),
      'amount': amount.take(rows),
      'currency': pa.array([self.currency] * len(rows), pa.string()),
      'line_type': line_type.take(rows),
      'is_cancellation': is_cancellation.take(rows),
      'order_time': order_time.take(rows),
      'customer_id': map_distinct([customer.take(rows)], self.customer, [pa.string()])[0],
      'country': map_distinct([country_name], iso_country, [pa.string()])[0],
      'country_name': country_name,
      'source': pa.array([chunk.source] * len(rows), pa.string()),
      'position': pa.array(candidates[keep] + chunk.first_position, pa.int64()),
    }
    schema = schema_of(OrderLine)
    table = pa.Table.from_arrays(
      [columns.get(field.name, pa.nulls(len(rows), field.type)) for field in schema],
      schema=schema,
    )
    decided = np.zeros(len(payloads), bool)
    decided[candidates[keep]] = True
    return ParsedChunk(table, {}, chunk.records(np.flatnonzero(~decided).tolist()))


class ParseOrdersCsv(beam.PTransform):
  """LineChunks of order CSV records (ReadLines with chunk_bytes) to OrderLines on
  ORDER_LINES_TAG, the rest filtered or dead-lettered on DEAD_LETTER_TAG.

  Chunks are parsed on ``threads`` threads (ParseLineChunks); the lines go on as records,
  which the order steps take (an export holds few lines next to the event streams).
  """

  def __init__(
    self, pseudonymizer: Pseudonymizer, tz_name: str, currency: str, now_us: int, threads: int = 1
  ):
    super().__init__()
    parser = OrdersCsvChunkParser(pseudonymizer, tz_name, currency, now_us)
    self._parse = ParseLineChunks(
      {'orders-csv': (parser, ORDERS_CSV_STEP)}, OrderLine, ORDER_LINES_TAG, threads
    )

  def expand(self, chunks):
    outputs = chunks | 'ParseChunks' >> self._parse
    lines = outputs[ORDER_LINES_TAG] | 'OrderLines' >> beam.FlatMap(
      partial(from_batch, OrderLine)
    ).with_output_types(OrderLine)
    return {ORDER_LINES_TAG: lines, DEAD_LETTER_TAG: outputs[DEAD_LETTER_TAG]}
