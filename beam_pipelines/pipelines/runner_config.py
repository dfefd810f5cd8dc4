"""Runner configs: one YAML per runner, expanded into PipelineOptions flags.

A config is a mapping with a ``pipeline_options:`` block whose keys are
PipelineOptions names (``runner``, ``direct_num_workers``, ...). A key that is
no known option is an error, so a typo cannot silently fall back to a default.

Flink's own settings (checkpointing, state backend) are options of Beam's
Java FlinkPipelineOptions, which Python does not know: they go in a
``flink_options:`` block, are checked against FLINK_OPTIONS, and reach the
Flink job server as flags (the FlinkRunner asks the job server for its
options and passes them on).

    flags = load_runner_config('runner_configs/direct.yaml')
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml
from apache_beam.options.pipeline_options import PipelineOptions

# Importing registers ShopstreamOptions with PipelineOptions; IN_PROCESS_RUNNER
# is kept importable from here, where the runner configs are.
from beam_pipelines.pipelines.options import IN_PROCESS_RUNNER  # noqa: F401

PIPELINE_OPTIONS_KEY = 'pipeline_options'
FLINK_OPTIONS_KEY = 'flink_options'
# Options of Beam 2.62's Java FlinkPipelineOptions (snake_case, as flags),
# the ones a deployment sets; see that class's javadoc for the rest.
FLINK_OPTIONS = frozenset(
  {
    'allow_non_restored_state',
    'auto_watermark_interval',
    'checkpoint_timeout_millis',
    'checkpointing_interval',
    'checkpointing_mode',
    'execution_mode_for_batch',
    'execution_retry_delay',
    'externalized_checkpoints_enabled',
    'fail_on_checkpointing_errors',
    'finish_bundle_before_checkpointing',
    'latency_tracking_interval',
    'max_bundle_size',
    'max_bundle_time_mills',
    'min_pause_between_checkpoints',
    'number_of_execution_retries',
    'object_reuse',
    'retain_externalized_checkpoints_on_cancellation',
    'savepoint_path',
    'shutdown_sources_after_idle_ms',
    'state_backend',
    'state_backend_storage_path',
  }
)
# Options naming a file that `make install` puts into the project's folder:
# a relative path is taken from the project root, wherever shopstream runs.
PROJECT_FILE_OPTIONS = frozenset({'flink_job_server_jar', 'prism_location'})
# runner_configs/ beside the packages, for a relative path used outside the checkout.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve(path: str) -> str:
  """The path as given if it exists, else relative to the project root."""
  if os.path.exists(path) or os.path.isabs(path):
    return path
  candidate = os.path.join(PROJECT_ROOT, path)
  return candidate if os.path.exists(candidate) else path


def known_option_names() -> set[str]:
  return set(PipelineOptions([]).get_all_options(drop_default=False).keys())


def option_flags(values: dict[str, Any]) -> list[str]:
  """PipelineOptions flags for a mapping of option name to value."""
  flags = []
  for name, value in values.items():
    if value is None or value is False:
      continue
    if value is True:
      flags.append(f'--{name}')
    elif isinstance(value, list):
      flags.extend(f'--{name}={item}' for item in value)
    elif isinstance(value, dict):
      flags.append(f'--{name}={json.dumps(value)}')
    else:
      flags.append(f'--{name}={value}')
  return flags


def load_runner_config(path: str) -> list[str]:
  """The flags a runner YAML stands for; ValueError names the problem."""
  path = resolve(path)
  try:
    with open(path, encoding='utf-8') as f:
      config = yaml.safe_load(f)
  except OSError as e:
    raise ValueError(f'cannot read runner config {path}: {e.strerror}') from e
  except yaml.YAMLError as e:
    raise ValueError(f'runner config {path} is not valid YAML: {e}') from e
  if not isinstance(config, dict) or not isinstance(config.get(PIPELINE_OPTIONS_KEY), dict):
    raise ValueError(f'runner config {path} needs a mapping under "{PIPELINE_OPTIONS_KEY}:"')
  unknown_keys = sorted(set(config) - {PIPELINE_OPTIONS_KEY, FLINK_OPTIONS_KEY})
  if unknown_keys:
    raise ValueError(f'runner config {path}: unknown sections {unknown_keys}')
  values = dict(config[PIPELINE_OPTIONS_KEY])
  for name in PROJECT_FILE_OPTIONS & set(values):
    values[name] = os.path.join(PROJECT_ROOT, values[name])  # unchanged when absolute
  unknown = sorted(set(values) - known_option_names())
  if unknown:
    raise ValueError(f'runner config {path}: unknown pipeline options {unknown}')
  flink = config.get(FLINK_OPTIONS_KEY) or {}
  if flink and values.get('runner') != 'FlinkRunner':
    raise ValueError(f'runner config {path}: {FLINK_OPTIONS_KEY} need runner: FlinkRunner')
  unknown = sorted(set(flink) - FLINK_OPTIONS)
  if unknown:
    raise ValueError(f'runner config {path}: unknown Flink options {unknown}')
  return option_flags(values) + option_flags(flink)
