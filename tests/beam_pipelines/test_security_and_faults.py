"""Secrets stay out of logs and summaries; an unwritable output fails clearly and cleanly."""

from __future__ import annotations

import glob
import os

from beam_pipelines import cli
from tests.conftest import fixture_path

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


def test_an_unwritable_output_fails_with_a_clear_error_and_leaves_nothing(tmp_path, capsys):
  blocker = tmp_path / 'a-file'
  blocker.write_text('not a folder')
  output = blocker / 'tables'  # cannot be created: its parent is a file
  assert cli.main(['run', *SOURCES, '--output', str(output)]) == 1
  err = capsys.readouterr().err
  assert 'shopstream run: failed:' in err and 'a-file' in err
  assert sorted(os.listdir(tmp_path)) == ['a-file']
  assert blocker.read_text() == 'not a folder'
