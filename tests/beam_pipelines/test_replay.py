"""Dead-letter replay: after a vocabulary fix, replaying equals rerunning everything.

The sample's clickstream has events of an unknown type ("teleport"). A run
dead-letters them; then the synonym is added (as an operator would after
taking on a new feed) and `shopstream replay` folds them in. The referee is a
fresh run over the same inputs with the fix: events, sessions and the
remaining dead letters must be equal, and a second replay recovers nothing.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from beam_pipelines import cli
from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from beam_pipelines.io import tables
from beam_pipelines.io.table_store import table_files
from beam_pipelines.pipelines.derived_pipeline import rows_of
from tests.beam_pipelines.stored_tables import stored_rows
from transforms.parse import event_types
from transforms.records import OrderLine
from transforms.sessions.streaming import late_dead_letter


@pytest.fixture(scope='module')
def inputs(tmp_path_factory) -> list[str]:
  folder = tmp_path_factory.mktemp('inputs')
  generate(GeneratorConfig(output_dir=str(folder), events=1500, days=2, seed=4))
  return [
    '--source',
    f'events-jsonl={folder}/events-*.jsonl.gz',
    '--source',
    f'access-log={folder}/access.log',
    '--reference-time',
    '2026-06-01T00:00:00Z',
    '--progress',
    'never',
  ]


@pytest.fixture
def teleport_is_a_page_view(monkeypatch):
  """The fix: a synonym for the feed's unknown event type."""
  monkeypatch.setitem(event_types.SYNONYMS, 'teleport', event_types.PAGE_VIEW)
  event_types.canonical_event_type.cache_clear()
  yield
  event_types.canonical_event_type.cache_clear()


def rows(output, table: str) -> list[tuple]:
  """The table's rows, in whichever format the output holds it."""
  columns = '*' if table != 'dead_letter' else 'payload, reason, source, position, dt'
  return stored_rows(output, table, columns)


def replay(output, *args) -> dict:
  return cli.main(
    ['replay', '--output', str(output), '--reference-time', '2026-06-01T00:00:00Z', *args]
  )


@pytest.mark.parametrize('table_format', ['parquet', 'iceberg'])
def test_replay_after_a_fix_equals_a_fresh_run_and_recovers_nothing_twice(
  inputs, tmp_path, teleport_is_a_page_view, monkeypatch, capsys, table_format
):
  output = tmp_path / 'tables'
  with monkeypatch.context() as before_the_fix:
    before_the_fix.delitem(event_types.SYNONYMS, 'teleport')
    event_types.canonical_event_type.cache_clear()
    flags = ['--output', str(output), '--table-format', table_format]
    assert cli.main(['run', *inputs, *flags]) == 0
  event_types.canonical_event_type.cache_clear()
  unknown = [r for r in rows(output, 'dead_letter') if 'unknown_event_type' in r[1]]
  assert unknown, 'the sample has events of an unknown type'
  events_before = len(rows(output, 'events'))

  assert cli.main(['run', *inputs, '--output', str(tmp_path / 'fresh')]) == 0
  capsys.readouterr()

  assert replay(output, '--reason', 'unknown_event_type', '--dry-run') == 0
  assert 'recovered now: ' in capsys.readouterr().out
  assert len(rows(output, 'events')) == events_before  # the dry run changed nothing

  assert replay(output, '--reason', 'unknown_event_type') == 0
  out = capsys.readouterr().out
  report = json.loads(out[out.index('{') : out.rindex('}') + 1])
  assert report['replayed'] == len(unknown) and report['recovered'] > 0
  assert (
    report['clean'] + report['dead_letter'] + report['duplicate'] + report['filtered']
    == (report['replayed'])
  )
  for table in ('events', 'sessions', 'dead_letter'):
    assert rows(output, table) == rows(tmp_path / 'fresh', table), table
  assert len(rows(output, 'events')) == events_before + report['clean']
  [log] = glob.glob(str(output / '_replay' / '*.json'))
  assert json.loads(open(log).read())['replayed'] == len(unknown)

  # A second replay finds the recovered letters gone: nothing comes back twice.
  snapshot = {table: rows(output, table) for table in ('events', 'sessions', 'dead_letter')}
  assert replay(output, '--reason', 'unknown_event_type') == 0
  assert 'recovered now: 0' in capsys.readouterr().out
  assert {table: rows(output, table) for table in snapshot} == snapshot


def test_letters_that_still_fail_stay_with_their_reason(inputs, tmp_path, capsys):
  output = tmp_path / 'tables'
  assert cli.main(['run', *inputs, '--output', str(output)]) == 0
  before = rows(output, 'dead_letter')
  capsys.readouterr()
  assert replay(output, '--reason', 'invalid_json') == 0  # no fix: they fail again
  out = capsys.readouterr().out
  assert 'recovered now: 0' in out
  assert rows(output, 'dead_letter') == before


def test_replay_stops_while_a_backfill_holds_the_output(inputs, tmp_path, capsys):
  from beam_pipelines.pipelines import backfill

  output = tmp_path / 'tables'
  assert cli.main(['run', *inputs, '--output', str(output), '--derived-tables', 'never']) == 0
  lock = backfill.acquire_lock(backfill.default_state_dir(str(output)))
  capsys.readouterr()
  assert replay(output) == 2
  assert 'another backfill holds' in capsys.readouterr().err
  os.remove(lock)
  assert replay(output, '--reason', 'invalid_json') == 0
  assert not os.path.exists(lock)


def test_replay_needs_a_tables_folder(tmp_path, capsys):
  assert replay(tmp_path / 'nothing') == 2
  assert 'no dead_letter table' in capsys.readouterr().err
  os.makedirs(tmp_path / 'x' / 'dead_letter')
  assert replay(tmp_path / 'x', '--from', '2026-02-30') == 2
  shutil.rmtree(tmp_path / 'x')


@pytest.fixture(scope='module')
def dotted_orders(tmp_path_factory) -> tuple[str, str]:
  """(orders.csv, catalog.csv): some InvoiceDates written DD.MM.YYYY HH:MM, which the parser rejects.

  Dotted: every line of one order (a whole order comes back), the middle line
  of a three-line order (renumbered among the stored ones), and a repeated
  copy of a stored line (a duplicate once recovered).
  """
  folder = tmp_path_factory.mktemp('orders')
  generate(GeneratorConfig(output_dir=str(folder), events=1500, days=2, seed=4))
  header, *lines = (folder / 'orders.csv').read_text().splitlines()
  by_order: dict[str, list[int]] = {}
  for n, line in enumerate(lines):
    by_order.setdefault(line.split(',')[0], []).append(n)
  three = next(ns for ns in by_order.values() if len(ns) == 3)
  whole = next(ns for ns in by_order.values() if len(ns) == 2)

  def dotted(line: str) -> str:
    fields = line.split(',')
    month, day, rest = fields[4].split('/')
    year, time = rest.split(' ')
    fields[4] = f'{int(day):02d}.{int(month):02d}.{year} {time}'
    return ','.join(fields)

  for n in [three[1], *whole]:
    lines[n] = dotted(lines[n])
  lines.append(dotted(lines[three[0]]))  # the same line exported twice
  (folder / 'dotted.csv').write_text('\n'.join([header, *lines]) + '\n')
  return str(folder / 'dotted.csv'), str(folder / 'catalog.csv')


def read_dotted_dates(monkeypatch):
  """The fix: the order parser learns DD.MM.YYYY HH:MM."""
  from transforms.parse import parse_orders

  real = parse_orders.parse_local_time

  def parse_local_time(text, tz):
    day, sep, rest = text.strip().partition('.')
    if sep and rest.count('.') == 1:
      month, rest = rest.split('.')
      year, time = rest.split(' ')
      hour, minute = time.split(':')
      text = f'{year}-{month}-{day}T{int(hour):02d}:{minute}'
    return real(text, tz)

  monkeypatch.setattr(parse_orders, 'parse_local_time', parse_local_time)


def test_order_lines_replayed_after_a_fix_rebuild_their_orders_as_a_fresh_run(
  dotted_orders, tmp_path, monkeypatch, capsys
):
  orders_csv, catalog = dotted_orders
  sources = ['--source', f'orders-csv={orders_csv}', '--source', f'catalog-csv={catalog}']
  argv = [*sources, '--reference-time', '2026-06-01T00:00:00Z', '--progress', 'never']
  output = tmp_path / 'tables'
  assert cli.main(['run', *argv, '--output', str(output)]) == 0
  rejected = [r for r in rows(output, 'dead_letter') if 'invalid_order_time' in r[1]]
  assert len(rejected) == 4

  read_dotted_dates(monkeypatch)
  assert cli.main(['run', *argv, '--output', str(tmp_path / 'fresh')]) == 0
  assert not [r for r in rows(tmp_path / 'fresh', 'dead_letter') if 'order_time' in r[1]]
  capsys.readouterr()
  assert replay(output, '--reason', 'invalid_order_time', *sources) == 0
  out = capsys.readouterr().out
  assert 'days to recompute (orders, order_lines): 2026-03-0' in out
  report = json.loads(out[out.index('{') : out.rindex('}') + 1])
  assert report['replayed'] == 4 and report['recovered'] == 4
  assert (report['clean'], report['duplicate'], report['dead_letter']) == (3, 1, 0)
  for table in ('orders', 'order_lines', 'dead_letter'):
    assert rows(output, table) == rows(tmp_path / 'fresh', table), table

  # Nothing comes back twice.
  snapshot = {table: rows(output, table) for table in ('orders', 'order_lines', 'dead_letter')}
  assert replay(output, '--reason', 'invalid_order_time', *sources) == 0
  assert 'recovered now: 0' in capsys.readouterr().out
  assert {table: rows(output, table) for table in snapshot} == snapshot


def test_order_letters_of_tables_without_line_positions_are_skipped(tmp_path):
  """order_lines written in part before the position column: a recovered line has no place."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  from apache_beam.options.pipeline_options import PipelineOptions

  from beam_pipelines.io import tables
  from beam_pipelines.io.sources import record_parsers
  from beam_pipelines.pipelines import replay as replay_module
  from beam_pipelines.pipelines.options import ShopstreamOptions
  from transforms.enrich.pseudonymize import Pseudonymizer

  old_schema = tables.ORDER_LINES_SCHEMA.remove(
    tables.ORDER_LINES_SCHEMA.get_field_index('position')
  )
  # A day written since the column exists, and a later one written before.
  for day, schema in (('2026-03-01', tables.ORDER_LINES_SCHEMA), ('2026-03-02', old_schema)):
    (tmp_path / 'order_lines' / f'dt={day}').mkdir(parents=True)
    pq.write_table(schema.empty_table(), tmp_path / 'order_lines' / f'dt={day}' / 'a.parquet')
  letter = {
    'payload': b'ORD-1,SKU-1,THING,1,01.03.2026 10:00,1.00,,France',
    'reason': 'invalid_order_time',
    'detail': 'x',
    'step': 'parse_orders_csv',
    'source': 'orders-csv:/in/orders.csv',
    'position': '2',
    'event_time': None,
    'input_time': 1772359200000000,
  }
  (tmp_path / 'dead_letter' / 'dt=2026-03-01').mkdir(parents=True)
  pq.write_table(
    pa.Table.from_pylist([letter], tables.DEAD_LETTER_SCHEMA),
    tmp_path / 'dead_letter' / 'dt=2026-03-01' / 'a.parquet',
  )
  opts = PipelineOptions([]).view_as(ShopstreamOptions)
  parsers = record_parsers(opts, None, Pseudonymizer(b's' * 32), 1780272000000000)
  plan = replay_module.plan_replay(str(tmp_path), [], None, None, parsers, 90000, 86400)
  assert (plan.skipped, plan.in_scope, plan.order_days) == (1, [], [])


def test_fixed_width_order_letters_replay_with_the_layout_of_the_run(tmp_path, monkeypatch, capsys):
  """Records whose trailing blanks a text tool trimmed are too short for the layout.

  The fix: short newline-separated records are padded with blanks. The replay
  reads the letters with the run's --fixed-layout and equals a fresh run.
  """
  from transforms.parse.parse_fixed_orders import FixedWidthOrdersParser

  generate(GeneratorConfig(output_dir=str(tmp_path / 'in'), events=1500, days=2, seed=4))
  lines = (tmp_path / 'in' / 'orders-fixed.txt').read_bytes().splitlines()
  by_order: dict[bytes, list[int]] = {}
  for n, line in enumerate(lines):
    by_order.setdefault(line[:7], []).append(n)
  longer = next(ns for ns in by_order.values() if len(ns) >= 3)
  whole = next(ns for ns in by_order.values() if len(ns) == 2)
  for n in [longer[len(longer) // 2], *whole]:  # a middle line and a whole order
    lines[n] = lines[n].rstrip(b' ')
  (tmp_path / 'in' / 'trimmed.txt').write_bytes(b'\n'.join(lines) + b'\n')
  layout = os.path.join(
    os.path.dirname(cli.__file__), '..', '..', 'samples/orders-fixed/layout.yaml'
  )
  sources = ['--source', f'orders-fixed={tmp_path}/in/trimmed.txt', '--fixed-layout', layout]
  argv = [*sources, '--reference-time', '2026-06-01T00:00:00Z', '--progress', 'never']
  output = tmp_path / 'tables'
  assert cli.main(['run', *argv, '--output', str(output)]) == 0
  # Ours, and the sample's own truncated record (it stays a dead letter).
  assert len([r for r in rows(output, 'dead_letter') if r[1] == 'wrong_record_length']) == 4

  real = FixedWidthOrdersParser.__call__

  def padding(self, record):
    width = self.layout.record_length
    if self.layout.newline and 0 < len(record.payload.rstrip(b'\r')) < width:
      record = record._replace(payload=record.payload.rstrip(b'\r').ljust(width))
    return real(self, record)

  monkeypatch.setattr(FixedWidthOrdersParser, '__call__', padding)
  assert cli.main(['run', *argv, '--output', str(tmp_path / 'fresh')]) == 0
  still = [r for r in rows(tmp_path / 'fresh', 'dead_letter') if b'TRUNCATED' in r[0]]
  assert len(still) == 1 and still[0][1] != 'wrong_record_length'  # failing for another reason
  capsys.readouterr()
  assert replay(output, '--reason', 'wrong_record_length', '--fixed-layout', layout) == 0
  out = capsys.readouterr().out
  report = json.loads(out[out.index('{') : out.rindex('}') + 1])
  assert (report['replayed'], report['clean'], report['dead_letter']) == (4, 3, 1)
  for table in ('orders', 'order_lines', 'dead_letter'):
    assert rows(output, table) == rows(tmp_path / 'fresh', table), table


def test_orders_are_rebuilt_from_all_their_lines_across_days(tmp_path):
  """A recovered line on day A rebuilds A's orders; one of them has lines on B, whose other
  order has lines on C: all three days are rebuilt, and D, untouched, is not."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  from beam_pipelines.io import tables
  from beam_pipelines.pipelines import replay as replay_module
  from transforms.event_time import parse_event_time

  stored = {
    '2026-03-01': ['X', 'Y'],
    '2026-03-02': ['Y', 'Z'],
    '2026-03-03': ['Z'],
    '2026-03-04': ['W'],
  }
  for day, order_ids in stored.items():
    folder = tmp_path / 'order_lines' / f'dt={day}'
    folder.mkdir(parents=True)
    rows = [{'order_id': order_id} for order_id in order_ids]
    pq.write_table(pa.Table.from_pylist(rows, tables.ORDER_LINES_SCHEMA), folder / 'a.parquet')
  recovered = OrderLine._make([None] * len(OrderLine._fields))._replace(
    order_id='X', order_time=parse_event_time('2026-03-01T10:00:00Z')
  )
  assert replay_module.order_days(str(tmp_path), [recovered]) == [
    '2026-03-01',
    '2026-03-02',
    '2026-03-03',
  ]
  assert replay_module.order_days(str(tmp_path), []) == []


def test_a_late_event_replayed_lands_in_its_session(tmp_path, monkeypatch):
  """A stream dead-letters an event as late; replay folds it into its session.

  The referee is a batch run over every event. The tables under test are a run
  without the event plus the late letter the streaming path makes of it (from
  the referee's enriched row, as the stream holds it when it finds it late).
  """
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', 'late-salt')
  folder = tmp_path / 'in'
  generate(GeneratorConfig(output_dir=str(folder), events=600, days=1, seed=9))
  (gz,) = glob.glob(f'{folder}/events-*.jsonl.gz')
  lines = gzip.open(gz).read().splitlines()
  # A product view inside a session, with no raw user agent or IP: those are
  # gone from an enriched event, so the letter cannot carry them.
  first_of_key, late_line = set(), None
  for line in lines:
    obj = json.loads(line)
    key = obj.get('anonymous_id')
    if key in first_of_key and obj['event_type'] == 'product_view' and 'user_agent' not in obj:
      late_line = line
      break
    first_of_key.add(key)
  assert late_line is not None
  late_id = json.loads(late_line)['event_id']
  for name, kept in (('all', lines), ('without', [x for x in lines if x != late_line])):
    (tmp_path / name).mkdir()
    (tmp_path / name / 'events.jsonl').write_bytes(b'\n'.join(kept) + b'\n')
  common = ['--reference-time', '2026-06-01T00:00:00Z', '--progress', 'never']
  common += ['--derived-tables', 'never']
  for name in ('all', 'without'):
    source = f'events-jsonl={tmp_path / name}/events.jsonl'
    assert (
      cli.main(['run', '--source', source, '--output', str(tmp_path / f'{name}-out'), *common]) == 0
    )
  referee, output = tmp_path / 'all-out', tmp_path / 'without-out'

  (event,) = [
    e
    for file in table_files(str(referee), 'events')
    for e in rows_of(tables.EVENTS, pq.read_table(file.path))
    if e.event_id == late_id
  ]
  # Where the stream read it (no table column: it would differ between modes).
  letter = late_dead_letter(event._replace(source='kinesis:clicks'), event.event_time + 1)
  day_dir = output / 'dead_letter' / f'dt={tables.DEAD_LETTER.partition_day(letter)}'
  day_dir.mkdir(parents=True, exist_ok=True)
  pq.write_table(tables.to_arrow(tables.DEAD_LETTER, [letter]), day_dir / 'late.parquet')

  assert replay(output, '--reason', 'late') == 0
  for table in ('events', 'sessions'):
    query = f"select * from read_parquet('{{}}/{table}/*/*.parquet') order by all"
    got, want = (duckdb.connect().execute(query.format(o)).fetchall() for o in (output, referee))
    assert got == want, table
  assert not [r for r in rows(output, 'dead_letter') if r[1] == 'late']
