import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import beam_pipeline
from tests.transforms.helpers import make_event
from transforms.dead_letters import RecordError, RecordFiltered
from transforms.enrich.product_dimension import (
  JoinProductDimension,
  KeyedDimension,
  join_product,
  join_product_table,
  parse_catalog_line,
  parse_taxonomy_line,
)
from transforms.event_batches import from_batch, to_batch
from transforms.records import Category, Event, Product, RawRecord


def raw(line: bytes, position: int = 1, source: str = 's') -> RawRecord:
  return RawRecord(source, position, line, 0)


def test_taxonomy_lines():
  assert parse_taxonomy_line(raw(b'3 - Home & Garden >Decor > Candles ')) == Category(
    '3', 'Home & Garden > Decor > Candles', 's', 1
  )
  for line, reason in (
    (b'# Google_Product_Taxonomy_Version: 2021', 'comment'),
    (b'', 'blank_line'),
  ):
    with pytest.raises(RecordFiltered, match=reason):
      parse_taxonomy_line(raw(line))
  for line in (b'Home > Decor', b'x - Home', b'3 - Home >  > Decor'):
    with pytest.raises(RecordError, match='id - A > B > C'):
      parse_taxonomy_line(raw(line))


def test_catalog_lines():
  product = parse_catalog_line(raw(b'SKU-1,"Lantern, white",Nordlicht,8,12.50,eur'))
  assert product == Product('SKU-1', 'Lantern, white', 'Nordlicht', '8', '12.5', 'EUR', 's', 1)
  with pytest.raises(RecordFiltered, match='header'):
    parse_catalog_line(raw(b'product_id,title,brand,category_id,price,currency'))
  with pytest.raises(RecordError) as e:
    parse_catalog_line(raw(b',x,y,1,free,EURO'))
  assert e.value.reason == 'missing_product_id,invalid_price,invalid_currency'


PRODUCTS = {'SKU-1': Product('SKU-1', 'Lantern', 'Nordlicht', '8', '12.5', 'EUR', 's', 1)}
CATEGORIES = {
  '8': Category('8', 'Home > Lighting > Lanterns', 's', 1),
  '12': Category('12', 'Apparel > Shoes', 's', 2),
}


def test_join_fills_product_and_category_columns():
  joined, unknown = join_product(make_event('e', 0, product_id='SKU-1'), PRODUCTS, CATEGORIES)
  assert (joined.category_id, joined.category_path, joined.brand, joined.product_title) == (
    '8',
    'Home > Lighting > Lanterns',
    'Nordlicht',
    'Lantern',
  )
  assert not unknown
  # A category page has a category but no product.
  joined, unknown = join_product(make_event('e', 0, category_id='12'), PRODUCTS, CATEGORIES)
  assert (joined.category_path, unknown) == ('Apparel > Shoes', False)
  event = make_event('e', 0, product_id='SKU-404')
  assert join_product(event, PRODUCTS, CATEGORIES) == (event, True)


def test_pipeline_keeps_the_first_listing_and_joins_as_side_input():
  products = [
    Product('SKU-1', 'Lantern', 'Nordlicht', '8', '12.5', 'EUR', 'b', 1),
    Product('SKU-1', 'Other', 'Other', '12', '1', 'EUR', 'a', 9),
  ]
  with beam_pipeline() as p:
    dims = p | 'Products' >> beam.Create(products) | 'KeyProducts' >> KeyedDimension('product_id')
    cats = (
      p
      | 'Categories' >> beam.Create(list(CATEGORIES.values()))
      | 'KeyCats' >> KeyedDimension('category_id')
    )
    events = p | 'Events' >> beam.Create(
      [make_event('e1', 0, product_id='SKU-1'), make_event('e2', 1, product_id='SKU-9')]
    )
    joined = events | JoinProductDimension(dims, cats, Event)
    assert_that(
      joined | beam.Map(lambda e: (e.event_id, e.brand, e.category_path)),
      equal_to([('e1', 'Other', 'Apparel > Shoes'), ('e2', None, None)]),
    )


def test_the_table_join_gives_the_record_join():
  events = [
    make_event('a', 0, product_id='SKU-1'),
    make_event('b', 1, category_id='12'),
    make_event('c', 2, product_id='SKU-404'),
    make_event('d', 3),
    make_event('e', 4, product_id='SKU-1', category_id='12'),
    make_event('f', 5, product_id='SKU-404', category_id='12', brand='kept?'),
  ]
  table = pa.Table.from_batches([to_batch(Event, events)])
  joined, unknown = join_product_table(table, PRODUCTS, CATEGORIES)
  expected = [join_product(event, PRODUCTS, CATEGORIES) for event in events]
  assert from_batch(Event, joined) == [record for record, _ in expected]
  assert unknown.to_pylist() == [flag for _, flag in expected]
