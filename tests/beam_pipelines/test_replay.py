"""Dead-letter replay: after a vocabulary fix, replaying equals rerunning everything.

The sample's clickstream has events of an unknown type ("teleport"). A run
dead-letters them; then the synonym is added (as an operator would after
taking on a new feed) and `shopstream replay` folds them in. The referee is a
fresh run over the same inputs with the fix: events, sessions and the
remaining dead letters must be equal, and a second replay recovers nothing.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import duckdb
import pytest

from beam_pipelines import cli
from beam_pipelines.sample_data import GeneratorConfig, generate
from transforms import event_types


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
  columns = '*' if table != 'dead_letter' else 'payload, reason, source, position, dt'
  return (
    duckdb.connect()
    .execute(
      f"select {columns} from read_parquet('{output}/{table}/*/*.parquet', "
      'hive_partitioning = true) order by all'
    )
    .fetchall()
  )


def replay(output, *args) -> dict:
  return cli.main(
    ['replay', '--output', str(output), '--reference-time', '2026-06-01T00:00:00Z', *args]
  )


def test_replay_after_a_fix_equals_a_fresh_run_and_recovers_nothing_twice(
  inputs, tmp_path, teleport_is_a_page_view, monkeypatch, capsys
):
  output = tmp_path / 'tables'
  with monkeypatch.context() as before_the_fix:
    before_the_fix.delitem(event_types.SYNONYMS, 'teleport')
    event_types.canonical_event_type.cache_clear()
    assert cli.main(['run', *inputs, '--output', str(output)]) == 0
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
  from beam_pipelines import backfill

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
