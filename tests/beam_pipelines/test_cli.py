import os
import tempfile

import pytest

from beam_pipelines import cli
from tests.conftest import fixture_path


def run(argv, capsys):
  code = cli.main(argv)
  captured = capsys.readouterr()
  return code, captured.out, captured.err


@pytest.mark.parametrize(
  'argv,message',
  [
    (['run', '--output', 'x'], 'at least one --source'),
    (['run', '--source', 'events-jsonl=/nope/*.jsonl', '--output', 'x'], 'no file matches'),
    (['run', '--source', 'csv=/tmp/x', '--output', 'x'], "unknown kind 'csv'"),
    (['run', '--source', 'events-jsonl=x'], '--output DIR is needed'),
    (
      ['run', '--runner-config', '/nope.yaml', '--source', 'events-jsonl=x', '--output', 'x'],
      'cannot read runner config',
    ),
    (['generate', '--output', 'x', '--events', '0'], 'at least 1'),
  ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, capsys, tmp_path, monkeypatch):
  work, temp = tmp_path / 'work', tmp_path / 'temp'
  work.mkdir()
  temp.mkdir()
  monkeypatch.chdir(work)  # the default runner config is found from anywhere
  monkeypatch.setattr(tempfile, 'tempdir', str(temp))  # where Beam's Pipeline() makes a folder
  code, _, err = run(argv, capsys)
  assert code == cli.EXIT_BAD_ARGUMENTS
  assert message in err
  # Nothing made: not the output's lock folder, not Beam's temp folder.
  assert os.listdir(work) == [] and os.listdir(temp) == []


def test_a_run_and_a_backfill_never_rewrite_one_output_at_once(tmp_path, capsys, monkeypatch):
  from beam_pipelines.pipelines import backfill, batch_pipeline

  output = tmp_path / 'tables'
  source = ['--source', f'events-jsonl={fixture_path("events.jsonl")}', '--progress', 'never']
  run_argv = ['run', *source, '--output', str(output), '--derived-tables', 'never']
  lock = backfill.acquire_lock(backfill.default_state_dir(str(output)))
  code, _, err = run(run_argv, capsys)
  assert code == cli.EXIT_BAD_ARGUMENTS and 'another backfill holds' in err
  assert not (output / 'events').exists()
  os.remove(lock)

  # While a run works, a backfill of the same output is refused.
  backfill_codes = []
  real_run = batch_pipeline.run

  def run_with_a_backfill_meanwhile(flags, **kwargs):
    backfill_argv = ['backfill', '--from', '2026-03-01', '--to', '2026-03-01', *source]
    backfill_codes.append(run([*backfill_argv, '--output', str(output)], capsys))
    return real_run(flags, **kwargs)

  monkeypatch.setattr(batch_pipeline, 'run', run_with_a_backfill_meanwhile)
  code, out, _ = run(run_argv, capsys)
  assert code == 0 and 'Tables:' in out
  [(backfill_code, _, backfill_err)] = backfill_codes
  assert backfill_code == cli.EXIT_BAD_ARGUMENTS and 'another run holds' in backfill_err
  assert os.listdir(output / '_backfill') == []  # released


def test_bad_option_values_are_refused_by_the_parser(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(['run', '--session-gap-minutes', '-5', '--source', 'events-jsonl=x'])
  assert e.value.code == 2
  assert 'session-gap-minutes' in capsys.readouterr().err


@pytest.mark.parametrize(
  'command',
  [[], ['run'], ['generate'], ['kinesis'], ['kinesis', 'put'], ['kinesis', 'create-stream']],
)
def test_help(command, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(command + ['--help'])
  assert e.value.code == 0
  assert 'usage: shopstream' in capsys.readouterr().out


def test_generate_then_run(tmp_path, capsys):
  assert (
    cli.main(['generate', '--output', str(tmp_path / 'in'), '--events', '300', '--days', '1']) == 0
  )
  assert 'access.log' in capsys.readouterr().out
  code, out, _ = run(
    [
      'run',
      '--source',
      f'events-jsonl={tmp_path}/in/*.gz',
      '--output',
      str(tmp_path / 'out'),
      '--progress',
      'never',
    ],
    capsys,
  )
  assert code == 0
  assert '"totals"' in out and 'records read' in out
  assert (tmp_path / 'out' / '_summary.json').exists()


def test_kinesis_arguments_are_checked(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(['kinesis', 'put', 'stream'])  # no --source
  assert e.value.code == 2
  assert '--source' in capsys.readouterr().err
  code, _, err = run(['kinesis', 'create-stream', 's', '--shards', '0'], capsys)
  assert code == cli.EXIT_BAD_ARGUMENTS and 'at least 1' in err


def test_streaming_run_refuses_event_sources(capsys, tmp_path):
  (tmp_path / 'a.jsonl').write_text('{}\n')
  code, _, err = run(
    [
      'run',
      '--kinesis-stream',
      's',
      '--source',
      f'events-jsonl={tmp_path}/a.jsonl',
      '--output',
      str(tmp_path / 'out'),
    ],
    capsys,
  )
  assert code == cli.EXIT_BAD_ARGUMENTS and 'only the product dimension' in err
