"""The catalog and taxonomy chunk parsers give each record the record parser's outcome."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from tests.transforms import chunk_agreement
from transforms.parse.dimension_chunks import CatalogCsvChunkParser, TaxonomyChunkParser
from transforms.records import Category, LineChunk, Product

CATALOG = CatalogCsvChunkParser()
TAXONOMY = TaxonomyChunkParser()

PLAIN_CATALOG = [
  'SKU-1,Lantern,Nordlicht,8,12.50,eur',
  ' SKU-2 , , ,  , , ',
  'SKU-3,Lamp,,11,5,GBP',
  'SKU-4,Tent,Acme,10,1e2,usd',
  'SKU-5,Free,Acme,10,0,',
  'product_idx,title,brand,category_id,1,eur',
  'SKU-11,"Tent, 2 person",Acme,10,99.50,EUR',
  '"SKU-12"," ""Best"" lamp ",,"11","5",""',
]
OTHER_CATALOG = [
  'product_id,title,brand,category_id,price,currency',
  ' Product_ID ,x,y,1,2,EUR',
  ',x,y,1,2,EUR',
  'SKU-6,x,y,1,free,EUR',
  'SKU-7,x,y,1,-1,EUR',
  'SKU-8,x,y,1,NaN,EUR',
  'SKU-9,x,y,1,2,EURO',
  'SKU-10,x,y,1,2,E1R',
  'SKU-11,"Tent" 2,Acme,10,99.50,EUR',
  'SKU-12,x,y,1,2',
  'SKU-13,x,y,1,2,EUR,z',
  'SKU-14,caf\u00e9,y,1,2,EUR',
  '',
]
PLAIN_TAXONOMY = [
  '1 - Animals & Pet Supplies',
  '3 - Home & Garden >Decor > Candles ',
  '  12  - A - B > C',
  '13 - - A',
  '14 -  x > y',
]
OTHER_TAXONOMY = [
  '# Google_Product_Taxonomy_Version: 2021-09-21',
  '',
  '   ',
  'Home > Decor',
  'x - Home',
  '3 - Home >  > Decor',
  '3 - Home > Decor >',
  '3 - > Decor',
  '3 -Home',
  '3 - ',
  '\u00b2 - Home',
  '3 - Caf\u00e9',
  '3\t- Home',
]


def records_of(lines: list, kind: str):
  return chunk_agreement.records_of(lines, f'{kind}:test')


def test_plain_catalog_records_take_the_column_path():
  records = records_of(PLAIN_CATALOG, 'catalog-csv')
  assert chunk_agreement.assert_same_outcomes(CATALOG, records, Product) == set()


def test_other_catalog_records_are_left_to_the_record_parser():
  records = records_of(OTHER_CATALOG + PLAIN_CATALOG, 'catalog-csv')
  left = chunk_agreement.assert_same_outcomes(CATALOG, records, Product)
  assert left == set(range(1, len(OTHER_CATALOG) + 1))


def test_plain_taxonomy_lines_take_the_column_path():
  records = records_of(PLAIN_TAXONOMY, 'taxonomy')
  assert chunk_agreement.assert_same_outcomes(TAXONOMY, records, Category) == set()
  table = TAXONOMY.parse_chunk(LineChunk.of_records(records)).table
  assert table.column('category_path').to_pylist()[:3] == [
    'Animals & Pet Supplies',
    'Home & Garden > Decor > Candles',
    'A - B > C',
  ]


def test_other_taxonomy_lines_are_left_to_the_record_parser():
  records = records_of(OTHER_TAXONOMY + PLAIN_TAXONOMY, 'taxonomy')
  left = chunk_agreement.assert_same_outcomes(TAXONOMY, records, Category)
  assert left == set(range(1, len(OTHER_TAXONOMY) + 1))


def test_generated_exports(tmp_path):
  generate(GeneratorConfig(output_dir=str(tmp_path), events=500, days=1))
  for name, parser, record_type in (
    ('catalog.csv', CATALOG, Product),
    ('taxonomy.txt', TAXONOMY, Category),
  ):
    lines = (tmp_path / name).read_bytes().splitlines()
    records = records_of(lines, 'x')
    left = chunk_agreement.assert_same_outcomes(parser, records, record_type)
    assert len(left) < len(records) / 2, name


@settings(max_examples=80, deadline=None)
@given(st.randoms(use_true_random=False))
def test_mutated_records(rng: random.Random):
  alphabet = b' ,"->#.\t\xe9aZ09eE'
  for parser, lines, record_type in (
    (CATALOG, PLAIN_CATALOG + OTHER_CATALOG, Product),
    (TAXONOMY, PLAIN_TAXONOMY + OTHER_TAXONOMY, Category),
  ):
    mutated = chunk_agreement.mutated(rng, lines, alphabet)
    chunk_agreement.assert_same_outcomes(parser, records_of(mutated, 'x'), record_type)
