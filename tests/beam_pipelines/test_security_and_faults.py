"""Secrets stay out of logs and summaries; failures and retries leave no half-written rows."""

from __future__ import annotations

import glob
import json
import os
import resource
import signal
import subprocess
import sys

import apache_beam as beam
import duckdb
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import cli
from beam_pipelines.dev.sample_data import GeneratorConfig, generate
from beam_pipelines.io import parquet_sink, table_store
from beam_pipelines.pipelines import batch_pipeline, run_summary
from beam_pipelines.pipelines.options import ShopstreamOptions
from beam_pipelines.pipelines.runner_config import IN_PROCESS_RUNNER
from tests.conftest import fixture_path
from transforms.enrich import events as enrich

SALT = 'salt-8f14e45fceea167a5a36dedd4bea2543'
AWS_SECRET = 'aws-secret-3c59dc048e8850243be8079a5c74d079'
SOURCES = [
  '--source',
  f'events-jsonl={fixture_path("events.jsonl")}',
  '--source',
  f'access-log={fixture_path("access.log")}',
  '--reference-time',
  '2026-06-01T00:00:00Z',
  '--progress',
  'never',
]


def test_no_secret_reaches_logs_summaries_or_state(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', SALT)
  monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'AKIAEXAMPLEKEY')
  monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', AWS_SECRET)
  out = tmp_path / 'out'
  assert cli.main(['-v', 'run', *SOURCES, '--output', str(out / 'run')]) == 0
  assert (
    cli.main(
      ['-v', 'backfill', '--from', '2026-03-01', '--to', '2026-03-01', *SOURCES]
      + ['--output', str(out / 'backfill')]
    )
    == 0
  )
  captured = capsys.readouterr()
  texts = [captured.out, captured.err]
  for path in glob.glob(f'{out}/**/*.json', recursive=True):
    with open(path, encoding='utf-8') as f:
      texts.append(f.read())
  assert len(texts) > 5 and 'read' in captured.out  # logs and summaries were written
  for text in texts:
    assert SALT not in text and AWS_SECRET not in text


def test_real_input_without_a_salt_is_refused_and_a_generated_sample_runs(
  tmp_path, monkeypatch, capsys
):
  monkeypatch.delenv('SHOPSTREAM_PII_SALT')
  argv = ['run', *SOURCES, '--output', str(tmp_path / 'out')]
  assert cli.main(argv) == cli.EXIT_BAD_ARGUMENTS
  assert 'SHOPSTREAM_PII_SALT is not set' in capsys.readouterr().err
  assert not (tmp_path / 'out').exists()
  put = ['kinesis', 'put', 'clicks', '--source', SOURCES[1], '--region', 'us-east-1']
  assert cli.main(put) == cli.EXIT_BAD_ARGUMENTS
  assert 'SHOPSTREAM_PII_SALT is not set' in capsys.readouterr().err

  generate(GeneratorConfig(output_dir=str(tmp_path / 'sample'), events=200, days=1))
  sample = ['--source', f'events-jsonl={tmp_path}/sample/*.gz', *SOURCES[4:]]
  assert cli.main(['run', *sample, '--output', str(tmp_path / 'tables')]) == 0
  assert 'public default salt' in capsys.readouterr().err


def test_an_unwritable_output_fails_with_a_clear_error_and_leaves_nothing(tmp_path, capsys):
  blocker = tmp_path / 'a-file'
  blocker.write_text('not a folder')
  output = blocker / 'tables'  # cannot be created: its parent is a file
  assert cli.main(['run', *SOURCES, '--output', str(output)]) == 1
  err = capsys.readouterr().err
  assert 'shopstream run: failed:' in err and 'a-file' in err
  assert sorted(os.listdir(tmp_path)) == ['a-file']
  assert blocker.read_text() == 'not a folder'


def test_a_full_disk_fails_the_run_clearly_and_leaves_the_old_tables(tmp_path):
  """The writer's files hit a real OS limit mid-run: a file-size limit (RLIMIT_FSIZE).

  Writes past it fail with EFBIG as they would with ENOSPC on a full disk;
  mounting a small file system needs privileges these machines lack.
  """
  output = tmp_path / 'out'
  events_only = ['run', '--source', f'events-jsonl={fixture_path("events.jsonl")}', *SOURCES[2:]]
  assert cli.main([*events_only, '--output', str(output), '--derived-tables', 'never']) == 0
  before = snapshot(output)

  def small_disk():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))  # smaller than any Parquet file

  done = subprocess.run(
    [sys.executable, '-m', 'beam_pipelines.cli', 'run', *SOURCES, '--output', str(output)],
    preexec_fn=small_disk,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 1
  assert 'shopstream run: failed:' in done.stderr and 'File too large' in done.stderr
  assert snapshot(output) == before  # no partition half-written, none replaced
  assert not (output / '_staging').exists()


def test_a_worker_failure_mid_run_leaves_the_old_tables_and_a_rerun_is_clean(
  tmp_path, monkeypatch, capsys
):
  events, lines, argv, before = tables_of_three_lines(tmp_path)

  # More input, and a writer that dies mid-run (the events are staged by then, or
  # not: either way nothing may show): the bundle fails.
  events.write_bytes(b'\n'.join(lines) + b'\n')
  real_to_arrow = parquet_sink.to_arrow

  def failing_to_arrow(spec, *args, **kwargs):
    if spec.name == 'dead_letter':  # the fixture's bad lines: written in every run
      raise OSError('disk gone mid-bundle (injected)')
    return real_to_arrow(spec, *args, **kwargs)

  monkeypatch.setattr(parquet_sink, 'to_arrow', failing_to_arrow)
  assert cli.main([*argv, '--output', str(tmp_path / 'out')]) == 1
  assert 'injected' in capsys.readouterr().err
  assert snapshot(tmp_path / 'out') == before  # nothing half-written is visible
  assert not (tmp_path / 'out' / '_staging').exists()

  monkeypatch.setattr(parquet_sink, 'to_arrow', real_to_arrow)
  assert cli.main([*argv, '--output', str(tmp_path / 'out')]) == 0
  assert cli.main([*argv, '--output', str(tmp_path / 'clean')]) == 0
  assert tables(tmp_path / 'out') == tables(tmp_path / 'clean')


def test_records_that_do_not_add_up_fail_the_run_before_anything_is_published(
  tmp_path, monkeypatch, capsys
):
  """A miscount (dead letters written but not counted) is found before publishing:
  the old tables stay, the summary shows the mismatch, nothing stays staged."""
  events, lines, argv, before = tables_of_three_lines(tmp_path)

  events.write_bytes(b'\n'.join(lines) + b'\n')  # now with unreadable lines
  monkeypatch.setattr(
    batch_pipeline.CountDeadLetters, 'process', lambda self, letter: [letter]
  )  # injected: dead letters go uncounted
  assert cli.main([*argv, '--output', str(tmp_path / 'out')]) == 1
  assert 'records read != clean + dead_letter' in capsys.readouterr().err
  assert snapshot(tmp_path / 'out') == before
  summary = json.loads((tmp_path / 'out' / '_summary.json').read_text())
  assert summary['totals']['dead_letter'] == 0 < summary['tables']['dead_letter']
  assert not (tmp_path / 'out' / '_staging').exists()


def test_bundles_the_runner_retries_leave_no_duplicate_rows_or_counts(tmp_path, monkeypatch):
  """Faults mid-bundle in enrichment and in the Parquet writer, each retried by the runner.

  Beam's legacy BundleBasedDirectRunner retries a failed bundle (up to 4
  attempts) like Flink or Dataflow would; the FnApiRunner fails the run
  instead. The failed attempts' rows, counts and staged file must not reach
  the tables or the counters.
  """
  argv = [*SOURCES, '--derived-tables', 'never']
  clean = run_directly(
    [f'--runner={IN_PROCESS_RUNNER}', *argv, '--output', str(tmp_path / 'clean')]
  )

  faults = []

  def fail_once(name, real, after_calls, applies=lambda *args: True):
    calls = []

    def flaky(*args, **kwargs):
      if applies(*args):
        calls.append(1)
        if len(calls) == after_calls and name not in faults:
          faults.append(name)
          raise RuntimeError(f'{name}: worker fault mid-bundle (injected)')
      return real(*args, **kwargs)

    return flaky

  # Both are looked up as module globals when called, so the runner's copies
  # of the DoFns call these (it runs bundles in this process).
  monkeypatch.setattr(
    enrich, 'parse_user_agent', fail_once('enrich', enrich.parse_user_agent, after_calls=3)
  )
  # The events writer fails on its second batch, after the first was staged
  # (with 4-row row groups every batch is flushed as it comes).
  monkeypatch.setattr(parquet_sink, 'ROW_GROUP_ROWS', 4)
  monkeypatch.setattr(
    parquet_sink,
    'cast_to_schema',
    fail_once('writer', parquet_sink.cast_to_schema, 2, lambda spec, *_: spec.name == 'events'),
  )
  retried = run_directly(
    ['--runner=BundleBasedDirectRunner', *argv, '--output', str(tmp_path / 'retried')]
  )

  assert faults == ['enrich', 'writer']
  names = ('events', 'sessions', 'dead_letter')
  rows = tables(tmp_path / 'retried', names)
  assert rows == tables(tmp_path / 'clean', names)
  assert len(rows['events']) == len({row[0] for row in rows['events']}) > 0
  assert not (tmp_path / 'retried' / '_staging').exists()
  # That runner reports the counters of steps after a Flatten short even
  # without faults (seen: 3 of 5 elements of a two-input Flatten), so the
  # dead-letter branch's counters are left out; every other count is exact.
  # (Table rows are counted at the manifest step, after a grouping, so
  # dead_letter's are exact too.)
  after_flatten = ('dead_letter|', 'dead_letter_reason|')
  assert retried == {k: v for k, v in clean.items() if not k.startswith(after_flatten)}
  assert retried['table_rows|events'] == len(rows['events'])


def tables_of_three_lines(tmp_path):
  """Tables in tmp_path/out from the first 3 lines of the events fixture: (the input
  file, all the fixture's lines, the run's arguments but --output, the tables' files)."""
  events = tmp_path / 'events.jsonl'
  lines = open(fixture_path('events.jsonl'), 'rb').read().splitlines()
  events.write_bytes(b'\n'.join(lines[:3]) + b'\n')
  argv = ['run', '--source', f'events-jsonl={events}', *SOURCES[4:], '--derived-tables', 'never']
  assert cli.main([*argv, '--output', str(tmp_path / 'out')]) == 0
  before = snapshot(tmp_path / 'out')
  return events, lines, argv, before


def run_directly(argv: list[str]) -> dict[str, int]:
  """Runs the batch graph on the runner named in argv, then publishes its tables; returns
  its committed counters."""
  options = PipelineOptions([*argv, '--run_id=direct'])
  pipeline = beam.Pipeline(options=options)
  batch_pipeline.build_pipeline(pipeline, options)
  result = pipeline.run()
  result.wait_until_finish()
  output = options.view_as(ShopstreamOptions).output
  assert table_store.for_output(output).publish_staged('direct')
  return run_summary.committed_counters(result)


def snapshot(folder) -> dict[str, bytes]:
  return {
    os.path.relpath(path, folder): open(path, 'rb').read()
    for path in glob.glob(f'{folder}/**/*.parquet', recursive=True)
  }


def tables(folder, names=('events', 'sessions')) -> dict[str, list]:
  return {
    table: duckdb.connect()
    .execute(f"select * from read_parquet('{folder}/{table}/*/*.parquet') order by all")
    .fetchall()
    for table in names
  }


# Addresses in shapes the scrubber's patterns were not written from, in every field that
# carries text: (where, raw value as the input holds it, what must not appear in a table).
UNSEEN_PII = [
  ('ip', '2001:DB8:85A3::8A2E:370:7334', '2001:db8:85a3::8a2e:370:7334'),
  ('page_url', 'https://shop.example/p?ip=fe80::1ff:fe23:4567:890a', 'fe80::1ff:fe23:4567:890a'),
  ('page_url', 'https://shop.example/u/JANE.Roe%40Example.ORG/orders', 'jane.roe@example.org'),
  ('referrer', 'https://mail.example.net/?to=Bob.Smith+tag@Sub.Example.co.uk', 'smith+tag@sub'),
  ('referrer', 'http://[2001:db8::42]/search', '2001:db8::42'),
  ('user_id', 'Carol.Doe@Example.com', 'carol.doe@example.com'),
  ('properties', {'contact': {'email': 'DAVE@EXAMPLE.IO'}}, 'dave@example.io'),
  ('properties', {'seen_from': ['198.51.100.23', '::FFFF:192.0.2.129']}, '0.2.129'),
  ('properties', {'note': 'from ::ffff:192.0.2.128'}, '0.2.128'),  # none of it
]


def test_no_unseen_ipv6_or_email_reaches_a_table(tmp_path):
  events = []
  for n, (field, value, _) in enumerate(UNSEEN_PII):
    event = {
      'event_id': f'pii-{n}',
      'event_type': 'page_view',
      'event_time': '2026-03-01T10:00:00Z',
      'anonymous_id': f'a-{n}',
      'user_agent': 'Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0',
    }
    event[field] = value
    events.append(json.dumps(event))
  source = tmp_path / 'pii.jsonl'
  source.write_text('\n'.join(events) + '\n')
  output = tmp_path / 'out'
  argv = ['run', '--source', f'events-jsonl={source}', *SOURCES[4:], '--output', str(output)]
  assert cli.main(argv) == 0
  summary = json.loads((output / '_summary.json').read_text())
  assert summary['totals']['clean'] == len(UNSEEN_PII)  # all kept, none dead-lettered
  derived = ('interactions', 'session_sequences', 'customers', 'retention_cohorts')
  for table in ('events', 'sessions', *derived):
    files = glob.glob(f'{output}/{table}/**/*.parquet', recursive=True)
    if not files:
      continue
    rows = duckdb.connect().execute(f"select * from read_parquet('{output}/{table}/**/*.parquet')")
    text = '\n'.join(str(row) for row in rows.fetchall()).lower().replace('%40', '@')
    leaked = [needle for _, _, needle in UNSEEN_PII if needle in text]
    assert leaked == [], f'{table} leaks {leaked}'
