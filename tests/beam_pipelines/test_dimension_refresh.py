"""The streaming product dimension: read like batch, reloaded when its files change."""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.io import dimension_refresh
from beam_pipelines.io.dimension_refresh import RefreshingProductJoin, read_dimension
from beam_pipelines.io.sources import SourceSpec, expand_inputs
from tests.conftest import beam_pipeline
from tests.transforms.helpers import make_event

HEADER = 'product_id,title,brand,category_id,price,currency\n'


def write_catalog(path, rows: str, mtime: int) -> None:
  path.write_text(HEADER + rows)
  os.utime(path, (mtime, mtime))


def specs(tmp_path) -> list[SourceSpec]:
  return [
    SourceSpec('catalog-csv', str(tmp_path / 'catalog*.csv')),
    SourceSpec('taxonomy', str(tmp_path / 'taxonomy.txt')),
  ]


def setup_files(tmp_path) -> None:
  write_catalog(
    tmp_path / 'catalog-a.csv',
    'p1,Tent,Acme,10,99.5,EUR\np1,Tent copy,Other,10,1,EUR\nbad-price,X,Y,10,abc,EUR\n',
    1_000_000,
  )
  write_catalog(tmp_path / 'catalog-b.csv', 'p1,Later file,Zed,10,1,EUR\np2,Lamp,,11,5,EUR\n', 1)
  (tmp_path / 'taxonomy.txt').write_text('# Google taxonomy\n10 - Outdoor > Tents\n11 - Home\n')


def test_read_dimension_keeps_the_first_row_of_an_id_and_counts_bad_lines(tmp_path):
  setup_files(tmp_path)
  dimension = read_dimension(expand_inputs(specs(tmp_path)))
  assert {pid: p.brand for pid, p in dimension.products.items()} == {'p1': 'Acme', 'p2': None}
  assert {cid: c.category_path for cid, c in dimension.categories.items()} == {
    '10': 'Outdoor > Tents',
    '11': 'Home',
  }
  assert dimension.rejected == 1  # the bad price; the header and comment are filtered


def test_join_reloads_only_after_the_interval_and_only_when_files_changed(tmp_path, monkeypatch):
  setup_files(tmp_path)
  clock = [100.0]
  monkeypatch.setattr(dimension_refresh.time, 'monotonic', lambda: clock[0])
  join = RefreshingProductJoin(specs(tmp_path), refresh_s=60)
  join.setup()
  join.start_bundle()

  def brand_of(product_id):
    [joined] = join.process(make_event('e', 0, product_id=product_id))
    return joined.brand, joined.category_path

  assert brand_of('p1') == ('Acme', 'Outdoor > Tents')
  write_catalog(tmp_path / 'catalog-a.csv', 'p1,Tent,NewBrand,11,99.5,EUR\n', 2_000_000)
  clock[0] += 59
  assert brand_of('p1') == ('Acme', 'Outdoor > Tents')  # not due yet
  clock[0] += 1
  assert brand_of('p1') == ('NewBrand', 'Home')
  assert join._counts[(dimension_refresh.RELOADED, 'product_dimension')] == 1
  clock[0] += 60  # due, but nothing changed: no second reload
  assert brand_of('p1') == ('NewBrand', 'Home')
  assert join._counts[(dimension_refresh.RELOADED, 'product_dimension')] == 1


def test_a_failed_reload_keeps_the_old_rows(tmp_path, monkeypatch):
  setup_files(tmp_path)
  clock = [0.0]
  monkeypatch.setattr(dimension_refresh.time, 'monotonic', lambda: clock[0])
  join = RefreshingProductJoin(specs(tmp_path), refresh_s=1)
  join.setup()
  join.start_bundle()
  os.remove(tmp_path / 'taxonomy.txt')  # mid-replacement: the pattern matches nothing
  clock[0] += 5
  [joined] = join.process(make_event('e', 0, product_id='p2'))
  assert joined.category_path == 'Home'
  assert join._counts[(dimension_refresh.RELOAD_FAILED, 'product_dimension')] == 1


def test_in_a_pipeline_unknown_products_pass_through_unjoined(tmp_path):
  setup_files(tmp_path)
  events = [make_event('a', 0, product_id='p2'), make_event('b', 1, product_id='nope')]
  with beam_pipeline() as p:
    joined = (
      p
      | beam.Create(events)
      | beam.ParDo(RefreshingProductJoin(specs(tmp_path), refresh_s=900))
      | beam.Map(lambda e: (e.event_id, e.category_path))
    )
    assert_that(joined, equal_to([('a', 'Home'), ('b', None)]))
