"""The product dimension of a streaming run, reloaded when its files change.

A batch run reads the catalog and taxonomy once, as side inputs. A stream
runs for weeks while the catalog export is replaced daily, so the streaming
join holds the dimension in each worker and, every ``refresh_s`` seconds,
lists the files again (size and modification time); when they changed it
reads them anew and joins later records with the new rows. The join rule is
the batch one (``join_product``), and so is the choice among repeated ids
(the first by source and line).

This is a per-worker reload rather than Beam's "slowly updating side input"
(PeriodicImpulse into a side input): it behaves the same on every runner,
with no reliance on how a runner re-fires side inputs in the global window.
Bad lines in a reloaded file are counted (``dimension_reload_rejected``) and
logged; their dead letters come from the pipeline's own read of the files at
start-up. A failed reload (a file replaced mid-listing) keeps the old rows
and is retried at the next check.

    records | beam.ParDo(RefreshingProductJoin(specs, refresh_s=900))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import NamedTuple

from beam_pipelines.io.sources import (
  CATALOG_CSV,
  InputFile,
  SourceSpec,
  expand_inputs,
  parse_file,
)
from transforms import accounting
from transforms.dead_letters import RecordError, RecordFiltered
from transforms.enrich.product_dimension import (
  UNKNOWN_PRODUCT,
  join_product,
  parse_catalog_line,
  parse_taxonomy_line,
)

_LOGGER = logging.getLogger(__name__)

RELOADED = 'dimension_reload'
RELOAD_REJECTED = 'dimension_reload_rejected'
RELOAD_FAILED = 'dimension_reload_failed'


class Dimension(NamedTuple):
  products: dict
  categories: dict
  rejected: int  # lines that did not parse
  fingerprint: tuple  # (path, size, mtime) of every file read


def fingerprint(files: Iterable[InputFile]) -> tuple:
  return tuple((f.kind, f.path, f.size, f.mtime_us) for f in files)


def read_dimension(files: list[InputFile]) -> Dimension:
  """Products and categories from the files; the first row of each id wins."""
  products: dict = {}
  categories: dict = {}
  rejected = 0
  for file in sorted(files):  # by kind, then path: the batch (source, line) order
    if file.kind == CATALOG_CSV:
      parse, target, id_field = parse_catalog_line, products, 'product_id'
    else:
      parse, target, id_field = parse_taxonomy_line, categories, 'category_id'
    for _, outcome in parse_file(file, parse):
      if isinstance(outcome, RecordError):
        rejected += 1
      elif not isinstance(outcome, RecordFiltered):
        target.setdefault(getattr(outcome, id_field), outcome)
  return Dimension(products, categories, rejected, fingerprint(files))


class RefreshingProductJoin(accounting.CountingDoFn):
  """Events or OrderLines joined with a product dimension that is reloaded when changed."""

  def __init__(self, specs: list[SourceSpec], refresh_s: float):
    self._specs = list(specs)
    self._refresh_s = refresh_s

  def setup(self):
    self._dimension = read_dimension(expand_inputs(self._specs))
    self._checked_at = time.monotonic()

  def process(self, record):
    self._refresh_if_due()
    joined, unknown = join_product(record, self._dimension.products, self._dimension.categories)
    if unknown:
      self.count(UNKNOWN_PRODUCT, record.source)
    yield joined

  def _refresh_if_due(self) -> None:
    now = time.monotonic()
    if now - self._checked_at < self._refresh_s:
      return
    self._checked_at = now
    try:
      files = expand_inputs(self._specs)
      if fingerprint(files) == self._dimension.fingerprint:
        return
      dimension = read_dimension(files)
    except (OSError, ValueError) as e:
      self.count(RELOAD_FAILED, 'product_dimension')
      _LOGGER.warning('product dimension reload failed, keeping the old rows: %s', e)
      return
    self._dimension = dimension
    self.count(RELOADED, 'product_dimension')
    if dimension.rejected:
      self.count(RELOAD_REJECTED, 'product_dimension', dimension.rejected)
    _LOGGER.info(
      'product dimension reloaded: %d products, %d categories, %d bad lines',
      len(dimension.products),
      len(dimension.categories),
      dimension.rejected,
    )
