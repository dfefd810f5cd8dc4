import glob
import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.runner_config import load_runner_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'runner_configs', '*.yaml'))))
def test_every_runner_config_loads_into_options(path):
  flags = load_runner_config(path)
  options = PipelineOptions(flags)
  assert options.view_as(StandardOptions).runner


def test_direct_config_names_the_fnapi_runner():
  flags = load_runner_config(os.path.join(ROOT, 'runner_configs', 'direct.yaml'))
  assert PipelineOptions(flags).view_as(StandardOptions).runner == 'FnApiRunner'


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
