"""Fixed-width order exports (cp1252 or EBCDIC) to OrderLines: the parser of one record.

order_chunks.py parses a chunk of records at a time with these rules, and
leaves the records its columns do not cover to FixedWidthOrdersParser.

The columns come from a layout file (fixed_width.py) that must name
invoice_no, stock_code, description, quantity, invoice_date, unit_price,
customer_id and country; the business rules are those of the CSV export
(parse_orders.order_line). A record of the wrong length, a column that does
not convert or bytes the code page cannot decode become a dead letter whose
detail names every column at fault.
"""

from __future__ import annotations

from transforms.dead_letters import RecordError, RecordFiltered
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.event_time import EventTimeError, check_plausible
from transforms.parse.fixed_width import Layout, cut_record
from transforms.parse.parse_orders import clean_customer_id, order_line, timezone
from transforms.records import OrderLine, RawRecord

STEP = 'parse_orders_fixed'
REQUIRED_COLUMNS = (
  'invoice_no',
  'stock_code',
  'description',
  'quantity',
  'invoice_date',
  'unit_price',
  'customer_id',
  'country',
)


class FixedWidthOrdersParser:
  """The parse function for one record; a class so its config pickles."""

  def __init__(
    self,
    layout: Layout,
    encoding: str,
    pseudonymizer: Pseudonymizer,
    tz_name: str,
    currency: str,
    now_us: int,
  ):
    self.layout = layout
    self.encoding = encoding
    self.pseudonymizer = pseudonymizer
    self.tz_name = tz_name
    self.tz = timezone(tz_name)
    self.currency = currency
    self.now_us = now_us

  def __reduce__(self):
    # type(self): a subclass (the chunk parser) unpickles as itself.
    return (
      type(self),
      (self.layout, self.encoding, self.pseudonymizer, self.tz_name, self.currency, self.now_us),
    )

  def __call__(self, record: RawRecord) -> OrderLine:
    payload = record.payload.rstrip(b'\r') if self.layout.newline else record.payload
    if self.layout.newline and not payload.strip():
      raise RecordFiltered('blank_line')
    if len(payload) != self.layout.record_length:
      raise RecordError.single(
        'wrong_record_length',
        f'record is {len(payload)} bytes, the layout says {self.layout.record_length}',
      )
    values, errors = cut_record(payload, self.layout, self.encoding)
    problems = [(e.code, str(e)) for e in errors]
    order_time = None
    if 'invoice_date' in values:
      try:
        order_time = round(values['invoice_date'].replace(tzinfo=self.tz).timestamp() * 1_000_000)
        check_plausible(order_time, self.now_us)
      except EventTimeError as e:
        problems.append((e.code, f'column invoice_date: {e}'))
        order_time = None
    if problems:
      raise RecordError(problems, order_time)
    return order_line(
      invoice_no=values['invoice_no'],
      stock_code=values['stock_code'],
      description=values['description'],
      quantity=values['quantity'],
      order_time=order_time,
      unit_price=values['unit_price'],
      customer_id=clean_customer_id(values['customer_id']),
      country_name=values['country'],
      currency=self.currency,
      source=record.source,
      position=record.position,
      pseudonymizer=self.pseudonymizer,
    )
