"""The product dimension: catalog and taxonomy exports, joined into events and order lines.

- ``catalog-csv``: ``product_id,title,brand,category_id,price,currency`` with
  a header line.
- ``taxonomy``: Google product taxonomy text, ``id - A > B > C`` a line,
  ``#`` comment lines.

Both become side inputs (``AsDict``): small next to the event stream, read
once. A product listed twice keeps its first row (by source, line) and the
rest count as duplicates. Records whose product is not in the catalog keep
flowing with empty product columns and are counted (``unknown_product``).

    catalog = chunks | ParseCatalogCsv()   # parse/dimension_chunks.py, with this module's rules
    products = catalog[PARSED_TAG] | KeyedDimension('product_id')
    categories = taxonomy[PARSED_TAG] | KeyedDimension('category_id')
    events | JoinProductDimension(products, categories, Event)
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue

from transforms import accounting
from transforms.dead_letters import RecordError, RecordFiltered
from transforms.event_batches import map_distinct
from transforms.parse.csv_lines import csv_fields, decode_legacy
from transforms.records import (
  Category,
  Product,
  RawRecord,
)

CATALOG_STEP = 'parse_catalog_csv'
TAXONOMY_STEP = 'parse_taxonomy'
CATALOG_COLUMNS = ('product_id', 'title', 'brand', 'category_id', 'price', 'currency')
UNKNOWN_PRODUCT = 'unknown_product'
PRODUCT_LINE = 'product'  # OrderLine.line_type of goods
PARSED_TAG = 'parsed'


def parse_taxonomy_line(record: RawRecord) -> Category:
  line = decode_legacy(record.payload).strip()
  if not line:
    raise RecordFiltered('blank_line')
  if line.startswith('#'):
    raise RecordFiltered('comment')
  category_id, sep, path = line.partition(' - ')
  category_id = category_id.strip()
  levels = [level.strip() for level in path.split('>')]
  if not sep or not category_id.isdigit() or not all(levels):
    raise RecordError.single('malformed_taxonomy_line', 'line is not "id - A > B > C"')
  return Category(category_id, ' > '.join(levels), record.source, record.position)


def parse_catalog_line(record: RawRecord) -> Product:
  fields = csv_fields(record, CATALOG_COLUMNS)
  product_id, title, brand, category_id, price, currency = (f.strip() for f in fields)
  problems = []
  if not product_id:
    problems.append(('missing_product_id', 'product_id is empty'))
  price_text: Optional[str] = None
  if price:
    try:
      amount = Decimal(price)
      if not amount.is_finite() or amount < 0:
        raise InvalidOperation
      price_text = format(amount.normalize(), 'f')
    except InvalidOperation:
      problems.append(('invalid_price', f'price {price[:40]!r} is not an amount'))
  if currency and (len(currency) != 3 or not currency.isalpha()):
    problems.append(('invalid_currency', f'currency {currency[:10]!r} is not ISO-4217'))
  if problems:
    raise RecordError(problems)
  return Product(
    product_id,
    title or None,
    brand or None,
    category_id or None,
    price_text,
    currency.upper() or None,
    record.source,
    record.position,
  )


class _KeepFirst(accounting.CountingDoFn):
  def process(self, keyed):
    _, rows = keyed
    ordered = sorted(rows, key=lambda row: (row.source, row.position))
    for repeat in ordered[1:]:
      self.count(accounting.DUPLICATE, repeat.source)
    self.count(accounting.CLEAN, ordered[0].source)
    yield keyed[0], ordered[0]


class KeyedDimension(beam.PTransform):
  """Dimension rows to (id, row), one per id: the first by (source, line)."""

  def __init__(self, id_field: str):
    super().__init__()
    self._id_field = id_field

  def expand(self, rows):
    id_field = self._id_field
    return (
      rows
      | 'KeyById' >> beam.Map(lambda row: (getattr(row, id_field), row))
      | 'GroupById' >> beam.GroupByKey()
      | 'KeepFirst' >> beam.ParDo(_KeepFirst())
    )


PRODUCT_COLUMNS = ('category_id', 'category_path', 'brand', 'product_title')


def product_columns(
  product_id: Optional[str], category_id: Optional[str], products: dict, categories: dict
) -> tuple[Optional[tuple], bool]:
  """(the PRODUCT_COLUMNS values a record gets, or None to keep its own; whether its
  product is unknown), from the record's product_id and category_id."""
  product: Optional[Product] = products.get(product_id) if product_id else None
  category_id = category_id or (product.category_id if product else None)
  category = categories.get(category_id) if category_id else None
  if product is None and category is None:
    return None, product_id is not None
  columns = (
    category_id,
    category.category_path if category else None,
    product.brand if product else None,
    product.product_title if product else None,
  )
  return columns, product is None and product_id is not None


def join_product(record, products: dict, categories: dict) -> tuple:
  """(the record with its product's columns, whether its product is unknown).

  Works on Events and OrderLines alike; order lines that are services
  (postage, fees) have no product to look up.
  """
  if getattr(record, 'line_type', PRODUCT_LINE) != PRODUCT_LINE:
    return record, False
  columns, unknown = product_columns(record.product_id, record.category_id, products, categories)
  if columns is None:
    return record, unknown
  return record._replace(**dict(zip(PRODUCT_COLUMNS, columns, strict=True))), unknown


def join_product_table(events: pa.Table, products: dict, categories: dict) -> tuple:
  """join_product for a table of Events (event_batches), once per distinct
  (product_id, category_id): (the joined table, the unknown-product mask)."""

  def lookup(product_id, category_id):
    columns, unknown = product_columns(product_id, category_id, products, categories)
    return (columns is not None, *(columns or (None,) * len(PRODUCT_COLUMNS)), unknown)

  string = pa.string()
  found, *columns, unknown = map_distinct(
    [events['product_id'], events['category_id']],
    lookup,
    [pa.bool_(), string, string, string, string, pa.bool_()],
  )
  joined = events
  for name, values in zip(PRODUCT_COLUMNS, columns, strict=True):
    index = joined.schema.get_field_index(name)
    joined = joined.set_column(index, name, pc.if_else(found, values, joined[name]))
  return joined, unknown


class _JoinProducts(accounting.CountingDoFn):
  def process(self, record, products, categories):
    if isinstance(record, pa.Table):
      joined, unknown = join_product_table(record, products, categories)
      for entry in record.filter(unknown)['source'].value_counts().to_pylist():
        self.count(UNKNOWN_PRODUCT, entry['values'], entry['counts'])
      yield joined
      return
    joined, unknown = join_product(record, products, categories)
    if unknown:
      self.count(UNKNOWN_PRODUCT, record.source)
    yield joined


class JoinProductDimension(beam.PTransform):
  """Events or OrderLines (or tables of Events) with category_id/category_path/brand/
  product_title filled."""

  def __init__(
    self, products: pvalue.PCollection, categories: pvalue.PCollection, record_type: type
  ):
    super().__init__()
    self._products = products
    self._categories = categories
    self._record_type = record_type

  def expand(self, records):
    return records | 'JoinProducts' >> beam.ParDo(
      _JoinProducts(), pvalue.AsDict(self._products), pvalue.AsDict(self._categories)
    ).with_output_types(self._record_type)
