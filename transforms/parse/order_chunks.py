"""The order exports a chunk of records at a time, as Arrow columns.

Most records of an export are plain: in the CSV, printable ASCII with eight
fields, each plain or quoted whole (csv_columns.py); in a fixed-width export, a
record of the layout's length. Those are cut in Arrow kernels or numpy, and the
rules of the record parsers (parse_orders.py, parse_fixed_orders.py) run once
per distinct value: dates, quantities with prices (and so amounts), stock
codes, customers, countries. A record the rules
would reject or filter, or that is not plain (a quote inside a field, a line break
in one, other bytes, the header, a record of another length), goes to the record
parser, which gives its outcome; so a record's outcome does not depend on the
path it took (tests compare the two paths record by record).

    chunks | ParseOrdersCsv(pseudonymizer, 'Europe/London', 'GBP', now_us)
    chunks | ParseFixedWidthOrders(layout, 'cp1252', pseudonymizer, 'UTC', 'EUR', now_us)
    -> {ORDER_LINES_TAG: OrderLines, DEAD_LETTER_TAG: DeadLetters}

    parser = OrdersCsvChunkParser(pseudonymizer, 'Europe/London', 'GBP', now_us)
    chunk = parser.parse_chunk(line_chunk)   # a LineChunk of one source
    chunk.table, chunk.filtered, chunk.rest    # rest: for parser(record)
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.dead_letters import RecordError
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.event_batches import as_numpy, map_distinct, rows_of, schema_of
from transforms.event_time import EventTimeError, check_plausible
from transforms.fixed_fields import string_bytes
from transforms.parse.countries import iso_country
from transforms.parse.csv_columns import csv_columns
from transforms.parse.fixed_width import Column, ColumnError, Layout, convert
from transforms.parse.line_chunks import ParsedChunk, plain_lines
from transforms.parse.parse_fixed_orders import STEP as ORDERS_FIXED_STEP
from transforms.parse.parse_fixed_orders import FixedWidthOrdersParser
from transforms.parse.parse_line_chunks import ParseRecordChunks
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
from transforms.records import ORDER_LINES_TAG, LineChunk, OrderLine

_MONEY_TYPES = [pa.int64(), pa.string(), pa.string(), pa.bool_()]
_NO_MONEY = (None, None, None, None)


class OrderColumns(NamedTuple):
  """Fields of a chunk's candidate records, a row each, as parse_orders.order_line takes
  them; null (or not ``valid``) where the record parser would give a dead letter."""

  invoice_no: pa.Array
  stock_code: pa.Array
  description: pa.Array
  quantity: pa.Array  # int64
  unit_price: pa.Array  # money text
  amount: pa.Array  # money text
  negative_price: pa.Array  # bool
  order_time: pa.Array  # int64, UTC microseconds
  customer_id: pa.Array  # as exported: order_lines cleans it
  country: pa.Array  # as exported
  valid: np.ndarray  # False where another field would be a dead letter


def priced(quantity: int, unit_price: Decimal) -> tuple:
  """(quantity, unit price, amount, whether the price is negative) as OrderColumns holds them."""
  return quantity, money(unit_price), money(unit_price * quantity), unit_price < Decimal(0)


def _line_type(code: Optional[str]) -> Optional[str]:
  """parse_orders.order_line's line type of a stripped stock code (None: not decoded)."""
  return None if code is None else SERVICE_CODES.get(code.upper(), PRODUCT)


def _strip(values: pa.Array) -> pa.Array:
  """str.strip of printable ASCII (only spaces are white); text a rule already stripped
  stays as it is."""
  return pc.utf8_trim(values, characters=' ')


def _empty_as_null(values: pa.Array) -> pa.Array:
  return pc.if_else(pc.equal(values, ''), None, values)


def order_lines(
  parser, chunk: LineChunk, candidates: np.ndarray, fields: OrderColumns
) -> ParsedChunk:
  """The order lines of the candidate records that every rule of order_line lets through;
  the chunk's other records are left to ``parser`` (a record parser with currency and
  pseudonymizer)."""
  invoice_no = _strip(fields.invoice_no)  # null where not ``valid``
  invoice_length = as_numpy(pc.utf8_length(invoice_no).fill_null(0))
  is_cancellation = pc.equal(pc.utf8_upper(pc.utf8_slice_codeunits(invoice_no, 0, 1)), 'C')
  cancellation = as_numpy(is_cancellation.fill_null(False))
  code = _strip(fields.stock_code)
  line_type = map_distinct([code], _line_type, [pa.string()])[0]
  quantities = as_numpy(fields.quantity.fill_null(0))
  # Every rule of parse_orders.order_line that rejects or filters a line; those lines
  # are left to the record parser for their outcome.
  keep = (
    fields.valid
    & as_numpy(fields.order_time.is_valid())
    & as_numpy(fields.quantity.is_valid())
    & (invoice_length > 0)
    & ~(cancellation & (invoice_length == 1))
    & ~(cancellation & (quantities > 0))
    & ~(~cancellation & (quantities < 0))
    & ~(
      as_numpy(fields.negative_price.fill_null(False))
      & as_numpy(pc.equal(line_type, PRODUCT).fill_null(False))
    )
  )
  rows = pa.array(np.flatnonzero(keep))
  country_name = _empty_as_null(_strip(fields.country.take(rows)))
  identity = parser.pseudonymizer.identity
  columns = {
    'order_id': invoice_no.take(rows),
    'product_id': _empty_as_null(code.take(rows)),
    'description': _empty_as_null(_strip(fields.description.take(rows))),
    'quantity': fields.quantity.take(rows),
    'unit_price': fields.unit_price.take(rows),
    'amount': fields.amount.take(rows),
    'currency': pa.array([parser.currency] * len(rows), pa.string()),
    'line_type': line_type.take(rows),
    'is_cancellation': is_cancellation.take(rows),
    'order_time': fields.order_time.take(rows),
    'customer_id': map_distinct(
      [fields.customer_id.take(rows)], lambda c: identity(clean_customer_id(c)), [pa.string()]
    )[0],
    'country': map_distinct([country_name], iso_country, [pa.string()])[0],
    'country_name': country_name,
    'source': pa.array([chunk.source] * len(rows), pa.string()),
    'position': pa.array(chunk.positions()[candidates[keep]], pa.int64()),
  }
  schema = schema_of(OrderLine)
  table = pa.Table.from_arrays(
    [columns.get(field.name, pa.nulls(len(rows), field.type)) for field in schema],
    schema=schema,
  )
  decided = np.zeros(len(chunk.lines), bool)
  decided[candidates[keep]] = True
  return ParsedChunk(table, {}, chunk.records(np.flatnonzero(~decided).tolist()))


class OrdersCsvChunkParser(OrdersCsvParser):
  """OrdersCsvParser with ``parse_chunk``: plain records as columns, the rest by record."""

  def order_time(self, text: str) -> Optional[int]:
    """The UTC microseconds of an InvoiceDate; None if the record parser would object."""
    try:
      time_us = parse_local_time(text, self.tz)
      check_plausible(time_us, self.now_us)
      return time_us
    except EventTimeError:
      return None

  @staticmethod
  def quantity_and_money(quantity_text: str, price_text: str) -> tuple:
    """priced(); Nones if either field would be a dead letter."""
    try:
      quantity = int(quantity_text.strip())
      unit_price = parse_amount('UnitPrice', price_text)
    except (ValueError, RecordError):
      return _NO_MONEY
    if abs(quantity) > MAX_QUANTITY:
      return _NO_MONEY
    return priced(quantity, unit_price)

  def parse_chunk(self, chunk: LineChunk) -> ParsedChunk:
    """The order lines of the chunk's plain records, and its other records as RawRecords."""
    candidates = np.flatnonzero(plain_lines(chunk.lines))
    lines = rows_of(chunk.lines, candidates).cast(pa.string())
    matched, fields = csv_columns(lines, len(COLUMNS))
    candidates = candidates[matched]
    invoice, stock, description, quantity, date, price, customer, country = fields
    # The header is left to the record parser too: "InvoiceDate" is no date.
    order_time = map_distinct([date], self.order_time, [pa.int64()])[0]
    quantity, unit_price, amount, negative = map_distinct(
      [quantity, price], self.quantity_and_money, _MONEY_TYPES
    )
    fields = OrderColumns(
      invoice,
      stock,
      description,
      quantity,
      unit_price,
      amount,
      negative,
      order_time,
      customer,
      country,
      np.ones(len(candidates), bool),
    )
    return order_lines(self, chunk, candidates, fields)


# The column types FixedWidthOrdersParser's rules expect; a layout that gives a field
# another type leaves every record to it.
_FIXED_TYPES = {
  'invoice_no': 'text',
  'stock_code': 'text',
  'description': 'text',
  'quantity': 'int',
  'invoice_date': 'date',
  'unit_price': 'decimal',
  'customer_id': 'text',
  'country': 'text',
}
_CR = ord('\r')
_WHITESPACE = np.zeros(256, bool)
_WHITESPACE[list(b' \t\n\r\x0b\x0c')] = True


class FixedWidthOrdersChunkParser(FixedWidthOrdersParser):
  """FixedWidthOrdersParser with ``parse_chunk``: records of the layout's length as
  columns, the rest by record."""

  def value(self, column: Column, raw: bytes):
    """The column's value as cut_record makes it; None if it would be a dead letter."""
    try:
      return convert(raw.decode(self.encoding), column, self.layout.year_pivot)
    except (UnicodeDecodeError, ColumnError):
      return None

  def order_time(self, column: Column, raw: bytes) -> Optional[int]:
    local = self.value(column, raw)
    if local is None:
      return None
    time_us = round(local.replace(tzinfo=self.tz).timestamp() * 1_000_000)
    try:
      check_plausible(time_us, self.now_us)
    except EventTimeError:
      return None
    return time_us

  def quantity_and_money(self, quantity: Column, price: Column, raw_q: bytes, raw_p: bytes):
    """priced(); Nones if either column would be a dead letter."""
    values = self.value(quantity, raw_q), self.value(price, raw_p)
    return _NO_MONEY if None in values else priced(*values)

  def candidates(self, lines: pa.BinaryArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the records of the layout's length, where each starts in ``data``), and ``data``:
    the array's bytes. The record parser strips a record's trailing b'\\r's, so a record of
    a \\r\\n file is one byte longer (more than one b'\\r' is left to it)."""
    length = self.layout.record_length
    data, offsets = string_bytes(lines)
    sizes, starts = np.diff(offsets), offsets[:-1]
    fits = sizes == length
    if self.layout.newline:

      def byte_at(at: np.ndarray, where: np.ndarray) -> np.ndarray:
        found = np.zeros(len(at), np.uint8)
        found[where] = data[at[where]]
        return found

      last = byte_at(starts + sizes - 1, sizes > 0)
      with_cr = (sizes == length + 1) & (last == _CR)
      with_cr &= byte_at(starts + length - 1, with_cr) != _CR
      fits = (fits & (last != _CR)) | with_cr
    rows = np.flatnonzero(fits)
    return rows, starts[rows], data

  def parse_chunk(self, chunk: LineChunk) -> ParsedChunk:
    """The order lines of the chunk's records of the layout's length, and its other records
    as RawRecords."""
    columns = {column.name: column for column in self.layout.columns}
    if any(columns[name].type != kind for name, kind in _FIXED_TYPES.items()):
      return ParsedChunk(schema_of(OrderLine).empty_table(), {}, chunk.records())
    candidates, starts, data = self.candidates(chunk.lines)
    matrix = data[starts[:, None] + np.arange(self.layout.record_length)]
    if self.layout.newline:
      blank = _WHITESPACE[matrix].all(axis=1)
      candidates, matrix = candidates[~blank], matrix[~blank]

    def raw(column: Column) -> pa.Array:
      cut = np.ascontiguousarray(matrix[:, column.start : column.start + column.length])
      return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(column.length), len(cut), [None, pa.py_buffer(cut.tobytes())]
      )

    def text(name: str) -> pa.Array:
      column = columns[name]
      return map_distinct([raw(column)], partial(self.value, column), [pa.string()])[0]

    valid = np.ones(len(candidates), bool)
    for column in self.layout.columns:
      if column.name not in _FIXED_TYPES:  # cut_record converts every column of the layout
        converts = map_distinct(
          [raw(column)], lambda b, c=column: self.value(c, b) is not None, [pa.bool_()]
        )[0]
        valid &= as_numpy(converts)
    quantity, price = columns['quantity'], columns['unit_price']
    quantity, unit_price, amount, negative = map_distinct(
      [raw(quantity), raw(price)], partial(self.quantity_and_money, quantity, price), _MONEY_TYPES
    )
    date = columns['invoice_date']
    order_time = map_distinct([raw(date)], partial(self.order_time, date), [pa.int64()])[0]
    texts = {name: text(name) for name, kind in _FIXED_TYPES.items() if kind == 'text'}
    for values in texts.values():
      valid &= as_numpy(values.is_valid())
    fields = OrderColumns(
      texts['invoice_no'],
      texts['stock_code'],
      texts['description'],
      quantity,
      unit_price,
      amount,
      negative,
      order_time,
      texts['customer_id'],
      texts['country'],
      valid,
    )
    return order_lines(self, chunk, candidates, fields)


class ParseOrdersCsv(ParseRecordChunks):
  """LineChunks of order CSV records (ReadLines with chunk_bytes) to OrderLines and
  DeadLetters."""

  def __init__(
    self, pseudonymizer: Pseudonymizer, tz_name: str, currency: str, now_us: int, threads: int = 1
  ):
    parser = OrdersCsvChunkParser(pseudonymizer, tz_name, currency, now_us)
    super().__init__('orders-csv', parser, ORDERS_CSV_STEP, OrderLine, ORDER_LINES_TAG, threads)


class ParseFixedWidthOrders(ParseRecordChunks):
  """LineChunks of fixed-width order records (ReadLines with chunk_bytes, and the layout's
  record_length when it has no line ends) to OrderLines and DeadLetters."""

  def __init__(
    self,
    layout: Layout,
    encoding: str,
    pseudonymizer: Pseudonymizer,
    tz_name: str,
    currency: str,
    now_us: int,
    threads: int = 1,
  ):
    parser = FixedWidthOrdersChunkParser(layout, encoding, pseudonymizer, tz_name, currency, now_us)
    super().__init__('orders-fixed', parser, ORDERS_FIXED_STEP, OrderLine, ORDER_LINES_TAG, threads)
