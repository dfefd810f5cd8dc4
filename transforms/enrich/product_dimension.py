"""The product dimension: catalog and taxonomy exports, joined into events and order lines.

- ``catalog-csv``: ``product_id,title,brand,category_id,price,currency`` with
  a header line.
- ``taxonomy``: Google product taxonomy text, ``id - A > B > C`` a line,
  ``#`` comment lines.

Both become side inputs (``AsDict``): small next to the event stream, read
once. A product listed twice keeps its first row (by source, line) and the
rest count as duplicates. Records whose product is not in the catalog keep
flowing with empty product columns and are counted (``unknown_product``).

    products = catalog[PARSED_TAG] | KeyedDimension('product_id')
    categories = taxonomy[PARSED_TAG] | KeyedDimension('category_id')
    events | JoinProductDimension(products, categories, Event)
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Optional

import apache_beam as beam
from apache_beam import pvalue

from transforms import accounting
from transforms.dead_letters import ParseRecords, RecordError, RecordFiltered
from transforms.parse.csv_lines import csv_fields, decode_legacy
from transforms.records import (
  DEAD_LETTER_TAG,
  Category,
  DeadLetter,
  Product,
  RawRecord,
  typed_outputs,
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


def _parse(records, parse_fn, step: str, record_type: type):
  outputs = records | beam.ParDo(ParseRecords(parse_fn, step)).with_output_types(
    record_type
  ).with_outputs(DEAD_LETTER_TAG, main=PARSED_TAG)
  return typed_outputs(outputs, **{DEAD_LETTER_TAG: DeadLetter})


class ParseCatalogCsv(beam.PTransform):
  """RawRecords of the catalog export to Products, with dead letters."""

  def expand(self, records):
    return _parse(records, parse_catalog_line, CATALOG_STEP, Product)


class ParseTaxonomy(beam.PTransform):
  """RawRecords of the taxonomy text to Categories, with dead letters."""

  def expand(self, records):
    return _parse(records, parse_taxonomy_line, TAXONOMY_STEP, Category)


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


def join_product(record, products: dict, categories: dict) -> tuple:
  """(the record with its product's columns, whether its product is unknown).

  Works on Events and OrderLines alike; order lines that are services
  (postage, fees) have no product to look up.
  """
  if getattr(record, 'line_type', PRODUCT_LINE) != PRODUCT_LINE:
    return record, False
  product: Optional[Product] = products.get(record.product_id) if record.product_id else None
  category_id = record.category_id or (product.category_id if product else None)
  category = categories.get(category_id) if category_id else None
  if product is None and category is None:
    return record, record.product_id is not None
  return record._replace(
    category_id=category_id,
    category_path=category.category_path if category else None,
    brand=product.brand if product else None,
    product_title=product.product_title if product else None,
  ), product is None and record.product_id is not None


class _JoinProducts(accounting.CountingDoFn):
  def process(self, record, products, categories):
    joined, unknown = join_product(record, products, categories)
    if unknown:
      self.count(UNKNOWN_PRODUCT, record.source)
    yield joined


class JoinProductDimension(beam.PTransform):
  """Events or OrderLines with category_id/category_path/brand/product_title filled."""

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
