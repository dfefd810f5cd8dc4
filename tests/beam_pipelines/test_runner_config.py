import glob
import json
import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.pipelines.options import bucket_count, parse_pipeline_options, worker_threads
from beam_pipelines.pipelines.runner_config import IN_PROCESS_RUNNER, load_runner_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'runner_configs', '*.yaml'))))
def test_every_runner_config_loads_into_options(path):
  flags = load_runner_config(path)
  options = PipelineOptions(flags)
  assert options.view_as(StandardOptions).runner


def test_direct_config_names_the_fnapi_runner():
  flags = load_runner_config(os.path.join(ROOT, 'runner_configs', 'direct.yaml'))
  assert PipelineOptions(flags).view_as(StandardOptions).runner == IN_PROCESS_RUNNER


def test_a_typo_fails(tmp_path):
  config = tmp_path / 'typo.yaml'
  config.write_text('pipeline_options:\n  runner: FnApiRunner\n  direct_num_worker: 2\n')
  with pytest.raises(ValueError, match='direct_num_worker'):
    load_runner_config(str(config))


@pytest.mark.parametrize('text', ['runner: FnApiRunner\n', 'pipeline_options: [1, 2]\n', ': : :\n'])
def test_malformed_configs_fail(tmp_path, text):
  config = tmp_path / 'bad.yaml'
  config.write_text(text)
  with pytest.raises(ValueError):
    load_runner_config(str(config))


def test_missing_config_fails():
  with pytest.raises(ValueError, match='cannot read'):
    load_runner_config('/nonexistent.yaml')


def options_of(name: str) -> PipelineOptions:
  return PipelineOptions(load_runner_config(os.path.join(ROOT, 'runner_configs', name)))


@pytest.mark.parametrize(
  'name, runner',
  [
    ('direct.yaml', IN_PROCESS_RUNNER),
    ('direct_parallel.yaml', IN_PROCESS_RUNNER),
    ('direct_streaming.yaml', IN_PROCESS_RUNNER),
    ('portable_local.yaml', 'PortableRunner'),
    ('prism_streaming.yaml', 'PrismRunner'),
    ('flink_local.yaml', 'FlinkRunner'),
    ('flink_emr_streaming.yaml', 'FlinkRunner'),
    ('flink_emr_backfill.yaml', 'FlinkRunner'),
  ],
)
def test_each_target_has_its_config_and_every_value_parses(name, runner):
  options = options_of(name)
  assert options.view_as(StandardOptions).runner == runner
  # Parsing every value with Beam's own argparse types: a bad value fails here.
  values = options.get_all_options(retain_unknown_options=True)
  assert values['runner'] == runner


@pytest.mark.parametrize('name', ['flink_emr_streaming.yaml', 'flink_emr_backfill.yaml'])
def test_emr_configs_pin_flink_1_19_and_a_process_harness(name):
  values = options_of(name).get_all_options(retain_unknown_options=True)
  assert values['flink_version'] == '1.19'  # EMR 7.4+ ships Flink 1.19
  assert values['environment_type'] == 'PROCESS'
  assert json.loads(values['environment_config'])['command'].endswith('/boot')
  assert values['parallelism'] >= 2


def test_the_emr_stream_checkpoints_exactly_once_to_rocksdb():
  values = options_of('flink_emr_streaming.yaml').get_all_options(retain_unknown_options=True)
  assert values['streaming'] is True
  # Flink's own options pass through to its job server, unparsed here.
  assert values['checkpointing_interval'] == '60000'
  assert values['checkpointing_mode'] == 'EXACTLY_ONCE'
  assert values['state_backend'] == 'rocksdb'


def test_local_configs_need_no_docker():
  for name in ('portable_local.yaml', 'prism_streaming.yaml', 'flink_local.yaml'):
    assert options_of(name).get_all_options()['environment_type'] == 'LOOPBACK', name


@pytest.mark.parametrize(
  'text, problem',
  [
    (
      'pipeline_options:\n  runner: FlinkRunner\nflink_options:\n  checkpointing_intervall: 5\n',
      'checkpointing_intervall',
    ),
    (
      'pipeline_options:\n  runner: FnApiRunner\nflink_options:\n  checkpointing_interval: 5\n',
      'need runner: FlinkRunner',
    ),
    ('pipeline_options:\n  runner: FnApiRunner\nflnk_options: {}\n', 'flnk_options'),
  ],
)
def test_flink_option_typos_and_misplaced_sections_fail(tmp_path, text, problem):
  config = tmp_path / 'bad.yaml'
  config.write_text(text)
  with pytest.raises(ValueError, match=problem):
    load_runner_config(str(config))


@pytest.mark.parametrize(
  'flags, buckets',
  [
    ([], 16),
    (['--parallelism=8'], 32),
    (['--direct_num_workers=2'], 16),
    (['--direct_num_workers=6'], 24),
    (['--parallelism=8', '--num-buckets=3'], 3),
  ],
)
def test_the_bucket_count_follows_the_parallelism(flags, buckets):
  assert bucket_count(parse_pipeline_options(flags)) == buckets


MIB = 1 << 20


@pytest.mark.parametrize(
  'flags, input_bytes, buckets',
  [
    ([], 0, 4),  # at least BUCKETS_PER_WORKER for the one worker
    ([], 36 * MIB, 4),  # 100k generated events: 3 by size, raised to 4
    ([], 100 * MIB, 7),
    ([], 358 * MIB, 16),  # 1M generated events: 23 by size, capped at 16
    (['--direct_num_workers=2'], 40 * MIB, 8),
    (['--parallelism=8'], 1 << 40, 32),
    (['--parallelism=8', '--num-buckets=3'], 1 << 40, 3),
  ],
)
def test_the_bucket_count_follows_the_input_size_within_the_parallelism(
  flags, input_bytes, buckets
):
  assert bucket_count(parse_pipeline_options(flags), input_bytes) == buckets


@pytest.mark.parametrize(
  'config, flags, threads',
  [
    ('direct.yaml', [], min(4, len(os.sched_getaffinity(0)))),
    ('direct.yaml', ['--worker-threads=1'], 1),
    ('direct_parallel.yaml', [], 1),
    ('flink_local.yaml', [], 1),
    ('flink_local.yaml', ['--worker-threads=3'], 3),
  ],
)
def test_chunks_are_parsed_on_threads_only_where_the_runner_runs_in_process(config, flags, threads):
  options = parse_pipeline_options(
    load_runner_config(os.path.join(ROOT, 'runner_configs', config)) + flags
  )
  assert worker_threads(options) == threads
