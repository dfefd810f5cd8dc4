"""The legacy order-history CSV to OrderLines: the rules, and the parser of one record.

order_chunks.py parses a chunk of records at a time with these rules, and
leaves the records its columns do not cover to OrdersCsvParser.

Columns: ``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,
CustomerID,Country`` (the layout of the classic "Online Retail" export).

Decisions a reader of the order tables must know:

- An invoice number starting with ``C`` is a cancellation; its quantities are
  negative and so are its amounts. A cancellation with a positive quantity is
  a dead letter (``cancellation_not_negative``).
- A negative quantity on an ordinary invoice at price 0 is a stock write-off
  (damaged, lost), not a sale: filtered as ``stock_adjustment``. At a price
  above 0 it is a dead letter (``negative_quantity``).
- Service lines (postage, fees, manual adjustments, discounts: SERVICE_CODES)
  stay in the order with ``line_type`` service or adjustment, so totals match
  the invoice; ``orders.product_amount`` leaves them out.
- InvoiceDate is local time of the legacy system (``--orders-timezone``,
  default UTC), as ISO ``YYYY-MM-DD HH:MM[:SS]`` or US ``M/D/YYYY H:MM``.
- CustomerID may be empty (guest orders); ``17850.0`` (a float export) is 17850.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from transforms.dead_letters import RecordError, RecordFiltered
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.event_time import US_PER_SECOND, EventTimeError, check_plausible
from transforms.parse.countries import iso_country
from transforms.parse.csv_lines import csv_fields
from transforms.records import OrderLine, RawRecord

STEP = 'parse_orders_csv'
COLUMNS = (
  'InvoiceNo',
  'StockCode',
  'Description',
  'Quantity',
  'InvoiceDate',
  'UnitPrice',
  'CustomerID',
  'Country',
)
PRODUCT, SERVICE, ADJUSTMENT = 'product', 'service', 'adjustment'
# Stock codes that are not goods, and what they are.
SERVICE_CODES = {
  'POST': SERVICE,
  'DOT': SERVICE,
  'C2': SERVICE,  # postage and carriage
  'BANK CHARGES': SERVICE,
  'AMAZONFEE': SERVICE,
  'CRUK': SERVICE,  # fees, commission
  'M': ADJUSTMENT,
  'D': ADJUSTMENT,
  'S': ADJUSTMENT,
  'B': ADJUSTMENT,  # manual, discount,
  'PADS': ADJUSTMENT,  # samples, bad debt, price-matching
}
_US_DATE = re.compile(r'(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2})(?::(\d{2}))?')
MAX_QUANTITY = 1_000_000


def timezone(name: str) -> ZoneInfo:
  try:
    return ZoneInfo(name)
  except (ZoneInfoNotFoundError, ValueError) as e:
    raise ValueError(f'unknown time zone {name!r}') from e


def parse_local_time(text: str, tz: ZoneInfo) -> int:
  """A legacy local date-time (ISO or US M/D/YYYY H:MM) to UTC microseconds."""
  text = text.strip()
  match = _US_DATE.fullmatch(text)
  try:
    if match:
      month, day, year, hour, minute, second = match.groups()
      local = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    else:
      local = dt.datetime.fromisoformat(text)
  except ValueError:
    raise EventTimeError(
      'invalid_order_time', f'InvoiceDate {text[:40]!r} is not a date-time'
    ) from None
  if local.tzinfo is None:
    local = local.replace(tzinfo=tz)
  return round(local.timestamp() * US_PER_SECOND)


def parse_amount(field: str, text: str) -> Decimal:
  try:
    value = Decimal(text.strip())
  except InvalidOperation:
    raise RecordError.single('invalid_price', f'{field} {text[:40]!r} is not a number') from None
  if not value.is_finite():
    raise RecordError.single('invalid_price', f'{field} {text!r} is not finite')
  return value


def clean_customer_id(text: str) -> Optional[str]:
  text = text.strip()
  if text.endswith('.0') and text[:-2].isdigit():
    text = text[:-2]
  return text or None


def money(value: Decimal) -> str:
  return format(value.quantize(Decimal('0.0001')).normalize(), 'f')


def order_line(
  *,
  invoice_no: str,
  stock_code: str,
  description: str,
  quantity: int,
  order_time: int,
  unit_price: Decimal,
  customer_id: Optional[str],
  country_name: Optional[str],
  currency: str,
  source: str,
  position: int,
  pseudonymizer: Pseudonymizer,
) -> OrderLine:
  """The business rules shared by every order export format (module docstring)."""
  invoice_no = invoice_no.strip()
  is_cancellation = invoice_no[:1].upper() == 'C'
  code = stock_code.strip()
  line_type = SERVICE_CODES.get(code.upper(), PRODUCT)
  if not invoice_no or (is_cancellation and len(invoice_no) == 1):
    raise RecordError.single('missing_order_id', 'InvoiceNo is empty', order_time)
  if is_cancellation and quantity > 0:
    raise RecordError.single(
      'cancellation_not_negative', f'cancellation {invoice_no} has quantity {quantity}', order_time
    )
  if not is_cancellation and quantity < 0:
    if unit_price == 0:
      raise RecordFiltered('stock_adjustment')
    raise RecordError.single(
      'negative_quantity', f'invoice {invoice_no} has quantity {quantity}', order_time
    )
  if unit_price < 0 and line_type == PRODUCT:
    raise RecordError.single('invalid_price', f'product {code} has price {unit_price}', order_time)
  country_name = country_name.strip() if country_name and country_name.strip() else None
  return OrderLine(
    order_id=invoice_no,
    line_no=None,
    product_id=code or None,
    description=description.strip() or None,
    quantity=quantity,
    unit_price=money(unit_price),
    amount=money(unit_price * quantity),
    currency=currency,
    line_type=line_type,
    is_cancellation=is_cancellation,
    order_time=order_time,
    customer_id=pseudonymizer.identity(customer_id),
    country=iso_country(country_name),
    country_name=country_name,
    category_id=None,
    category_path=None,
    brand=None,
    product_title=None,
    source=source,
    position=position,
  )


class OrdersCsvParser:
  """The parse function for one CSV line; a class so its config pickles."""

  def __init__(self, pseudonymizer: Pseudonymizer, tz_name: str, currency: str, now_us: int):
    self.pseudonymizer = pseudonymizer
    self.tz_name = tz_name
    self.tz = timezone(tz_name)
    self.currency = currency
    self.now_us = now_us

  def __reduce__(self):
    # type(self): a subclass (the chunk parser) unpickles as itself.
    return (type(self), (self.pseudonymizer, self.tz_name, self.currency, self.now_us))

  def __call__(self, record: RawRecord) -> OrderLine:
    fields = csv_fields(record, COLUMNS)
    invoice_no, stock_code, description, quantity_text, date_text, price_text, customer, country = (
      fields
    )
    problems, order_time, quantity, unit_price = [], None, None, None
    try:
      order_time = parse_local_time(date_text, self.tz)
      check_plausible(order_time, self.now_us)
    except EventTimeError as e:
      problems.append((e.code, str(e)))
      order_time = None
    try:
      quantity = int(quantity_text.strip())
      if abs(quantity) > MAX_QUANTITY:
        problems.append(('invalid_quantity', f'Quantity {quantity} is beyond {MAX_QUANTITY:,}'))
    except ValueError:
      problems.append(
        ('invalid_quantity', f'Quantity {quantity_text[:40]!r} is not a whole number')
      )
    try:
      unit_price = parse_amount('UnitPrice', price_text)
    except RecordError as e:
      problems.extend(e.problems)
    if problems:
      raise RecordError(problems, order_time)
    return order_line(
      invoice_no=invoice_no,
      stock_code=stock_code,
      description=description,
      quantity=quantity,
      order_time=order_time,
      unit_price=unit_price,
      customer_id=clean_customer_id(customer),
      country_name=country,
      currency=self.currency,
      source=record.source,
      position=record.position,
      pseudonymizer=self.pseudonymizer,
    )
