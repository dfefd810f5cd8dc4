"""The catalog and taxonomy exports a chunk of records at a time, as Arrow columns.

As for the other kinds (line_chunks.py): plain records (printable ASCII; in the
catalog six fields, each plain or quoted whole: csv_columns.py) are cut in
Arrow kernels and checked by the
rules of the record parsers in product_dimension.py, prices and currencies once
per distinct value; every other record (the header, a comment, quoted fields,
a quote inside a field, one a rule rejects) is left to the record parser for
its outcome. Tests compare
the two paths record by record.

    chunks | ParseCatalogCsv()   -> {PARSED_TAG: Products, DEAD_LETTER_TAG: DeadLetters}
    chunks | ParseTaxonomy()     -> {PARSED_TAG: Categories, DEAD_LETTER_TAG: DeadLetters}
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.enrich.product_dimension import (
  CATALOG_COLUMNS,
  CATALOG_STEP,
  PARSED_TAG,
  TAXONOMY_STEP,
  parse_catalog_line,
  parse_taxonomy_line,
)
from transforms.event_batches import as_numpy, map_distinct, rows_of, schema_of
from transforms.parse.csv_columns import csv_columns
from transforms.parse.line_chunks import ParsedChunk, plain_lines
from transforms.parse.parse_line_chunks import ParseRecordChunks
from transforms.records import Category, LineChunk, Product

# After the first " - ", the levels: at least one character that is not a space
# between each two '>' (parse_taxonomy_line strips each level and wants it non-empty).
_TAXONOMY_LINE = r'^ *([0-9]+) *? - ( *[^> ][^>]*(?:> *[^> ][^>]*)*)$'


def _strip(values: pa.Array) -> pa.Array:
  """str.strip of printable ASCII: only spaces are white."""
  return pc.utf8_trim(values, characters=' ')


def _empty_as_null(values: pa.Array) -> pa.Array:
  return pc.if_else(pc.equal(values, ''), None, values)


def _table(record_type: type, columns: dict[str, pa.Array]) -> pa.Table:
  schema = schema_of(record_type)
  return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)


def _rest(chunk: LineChunk, decided: np.ndarray) -> list:
  left = np.ones(len(chunk.lines), bool)
  left[decided] = False
  return chunk.records(np.flatnonzero(left).tolist())


def catalog_price(text: str) -> tuple[bool, Optional[str]]:
  """(whether parse_catalog_line takes the price, the price as it writes it)."""
  if not text:
    return True, None
  try:
    amount = Decimal(text)
  except InvalidOperation:
    return False, None
  if not amount.is_finite() or amount < 0:
    return False, None
  return True, format(amount.normalize(), 'f')


def catalog_currency(text: str) -> tuple[bool, Optional[str]]:
  """(whether parse_catalog_line takes the currency, the currency as it writes it)."""
  if text and (len(text) != 3 or not text.isalpha()):
    return False, None
  return True, text.upper() or None


class CatalogCsvChunkParser:
  """parse_catalog_line, with ``parse_chunk``: plain records as columns, the rest by record."""

  def __call__(self, record) -> Product:
    return parse_catalog_line(record)

  def parse_chunk(self, chunk: LineChunk) -> ParsedChunk:
    candidates = np.flatnonzero(plain_lines(chunk.lines))
    lines = rows_of(chunk.lines, candidates).cast(pa.string())
    matched, fields = csv_columns(lines, len(CATALOG_COLUMNS))
    candidates = candidates[matched]
    product_id, title, brand, category_id, price, currency = (_strip(f) for f in fields)
    price_ok, price = map_distinct([price], catalog_price, [pa.bool_(), pa.string()])
    currency_ok, currency = map_distinct([currency], catalog_currency, [pa.bool_(), pa.string()])
    keep = (
      as_numpy(pc.not_equal(product_id, ''))
      # The header is the record parser's to filter.
      & ~as_numpy(pc.equal(pc.utf8_lower(product_id), CATALOG_COLUMNS[0]))
      & as_numpy(price_ok)
      & as_numpy(currency_ok)
    )
    rows = pa.array(np.flatnonzero(keep))
    kept = candidates[keep]
    columns = {
      'product_id': product_id.take(rows),
      'product_title': _empty_as_null(title.take(rows)),
      'brand': _empty_as_null(brand.take(rows)),
      'category_id': _empty_as_null(category_id.take(rows)),
      'price': price.take(rows),
      'currency': currency.take(rows),
      'source': pa.array([chunk.source] * len(kept), pa.string()),
      'position': pa.array(chunk.positions()[kept], pa.int64()),
    }
    return ParsedChunk(_table(Product, columns), {}, _rest(chunk, kept))


class TaxonomyChunkParser:
  """parse_taxonomy_line, with ``parse_chunk``: plain ``id - A > B`` lines as columns, the
  rest by line."""

  def __call__(self, record) -> Category:
    return parse_taxonomy_line(record)

  def parse_chunk(self, chunk: LineChunk) -> ParsedChunk:
    candidates = np.flatnonzero(plain_lines(chunk.lines))
    lines = rows_of(chunk.lines, candidates).cast(pa.string())
    matched = as_numpy(pc.match_substring_regex(lines, _TAXONOMY_LINE))
    candidates = candidates[matched]
    lines = _strip(rows_of(lines, np.flatnonzero(matched)))
    parts = pc.split_pattern(lines, ' - ', max_splits=1)
    category_id = _strip(pc.list_element(parts, 0))
    levels = pc.split_pattern(pc.list_element(parts, 1), '>')
    trimmed = pa.ListArray.from_arrays(levels.offsets, _strip(levels.flatten()))
    columns = {
      'category_id': category_id,
      'category_path': pc.binary_join(trimmed, ' > '),
      'source': pa.array([chunk.source] * len(candidates), pa.string()),
      'position': pa.array(chunk.positions()[candidates], pa.int64()),
    }
    return ParsedChunk(_table(Category, columns), {}, _rest(chunk, candidates))


class ParseCatalogCsv(ParseRecordChunks):
  """LineChunks of the catalog export to Products on PARSED_TAG, with dead letters."""

  def __init__(self, threads: int = 1):
    super().__init__(
      'catalog-csv', CatalogCsvChunkParser(), CATALOG_STEP, Product, PARSED_TAG, threads
    )


class ParseTaxonomy(ParseRecordChunks):
  """LineChunks of the taxonomy text to Categories on PARSED_TAG, with dead letters."""

  def __init__(self, threads: int = 1):
    super().__init__(
      'taxonomy', TaxonomyChunkParser(), TAXONOMY_STEP, Category, PARSED_TAG, threads
    )
