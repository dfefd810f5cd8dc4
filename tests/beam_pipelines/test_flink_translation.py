"""The pipelines as Flink would get them: Runner API protos built with the EMR configs.

Flink cannot run here (its job server jar is on Maven Central), so this checks
what can be checked without it: every transform Flink's portable translator
would execute is one of its primitives, windows are ones it knows (no custom
or merging WindowFn), no TestStream, the requirements are ones it meets, and
the SDK harness environment is the PROCESS one the nodes have.
"""

from __future__ import annotations

import itertools
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.transforms import environments

from beam_pipelines.pipelines import batch_pipeline, streaming_pipeline
from beam_pipelines.pipelines.runner_config import IN_PROCESS_RUNNER, load_runner_config
from tests.conftest import fixture_path
from transforms import event_chain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_T = common_urns.primitives
_SDF = common_urns.sdf_components
# The primitives Beam's Java QueryablePipeline hands to the Flink translators
# (TestStream left out: production pipelines must not contain one).
FLINK_PRIMITIVES = {
  _T.PAR_DO.urn,
  _T.FLATTEN.urn,
  _T.GROUP_BY_KEY.urn,
  _T.IMPULSE.urn,
  _T.ASSIGN_WINDOWS.urn,
  common_urns.combine_components.COMBINE_PER_KEY_PRECOMBINE.urn,
  common_urns.combine_components.COMBINE_PER_KEY_MERGE_ACCUMULATORS.urn,
  common_urns.combine_components.COMBINE_PER_KEY_EXTRACT_OUTPUTS.urn,
  _SDF.PAIR_WITH_RESTRICTION.urn,
  _SDF.SPLIT_AND_SIZE_RESTRICTIONS.urn,
  _SDF.PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS.urn,
}
FLINK_WINDOW_FNS = {
  common_urns.global_windows.urn,
  common_urns.fixed_windows.urn,
  common_urns.sliding_windows.urn,
}
FLINK_REQUIREMENTS = {
  common_urns.requirements.REQUIRES_STATEFUL_PROCESSING.urn,
  common_urns.requirements.REQUIRES_SPLITTABLE_DOFN.urn,
  common_urns.requirements.REQUIRES_BUNDLE_FINALIZATION.urn,
}

BATCH_SOURCES = [
  f'--source=events-jsonl={fixture_path("events.jsonl")}',
  f'--source=access-log={fixture_path("access.log")}',
  f'--source=orders-csv={fixture_path("orders.csv")}',
  f'--source=orders-fixed={ROOT}/samples/orders-fixed/orders.txt',
  f'--fixed_layout={ROOT}/samples/orders-fixed/layout.yaml',
]


def proto_of(config: str, build, flags: list[str]) -> beam_runner_api_pb2.Pipeline:
  options = PipelineOptions(load_runner_config(os.path.join(ROOT, config)) + flags)
  pipeline = beam.Pipeline(runner=IN_PROCESS_RUNNER, options=options)  # built, never run
  build(pipeline, options)
  default = environments.Environment.from_options(options.view_as(PortableOptions))
  return pipeline.to_runner_api(default_environment=default)


def dimension(tmp_path) -> list[str]:
  catalog = tmp_path / 'catalog.csv'
  catalog.write_text('product_id,title,brand,category_id,price,currency\np1,T,B,1,2,EUR\n')
  taxonomy = tmp_path / 'taxonomy.txt'
  taxonomy.write_text('1 - Toys\n')
  return [f'--source=catalog-csv={catalog}', f'--source=taxonomy={taxonomy}']


PIPELINES = {
  'backfill day on flink_emr_backfill.yaml': (
    'runner_configs/flink_emr_backfill.yaml',
    batch_pipeline.build_pipeline,
    lambda tmp: [*BATCH_SOURCES, *dimension(tmp), f'--output={tmp}/out', '--day=2026-03-01'],
  ),
  'stream on flink_emr_streaming.yaml': (
    'runner_configs/flink_emr_streaming.yaml',
    streaming_pipeline.build_streaming_pipeline,
    lambda tmp: [*dimension(tmp), f'--output={tmp}/out', '--kinesis_stream=clicks'],
  ),
}


@pytest.mark.parametrize('name', sorted(PIPELINES))
def test_flink_gets_only_what_it_can_run(name, tmp_path):
  config, build, flags = PIPELINES[name]
  proto = proto_of(config, build, flags(tmp_path))
  transforms = proto.components.transforms
  leaves = [t for t in transforms.values() if not t.subtransforms]
  assert len(leaves) > 20
  for leaf in leaves:
    if leaf.spec.urn in FLINK_PRIMITIVES:
      continue
    # Anything else must be an identity (e.g. Create's MaybeReshuffle of one
    # value): no primitive, its output is its input, and Flink skips it.
    assert set(leaf.outputs.values()) <= set(leaf.inputs.values()), (
      f'{leaf.unique_name}: {leaf.spec.urn} is no Flink primitive'
    )
  assert not any(t.spec.urn == _T.TEST_STREAM.urn for t in transforms.values())

  strategies = proto.components.windowing_strategies.values()
  assert {s.window_fn.urn for s in strategies} <= FLINK_WINDOW_FNS  # nothing pickled
  assert all(
    s.merge_status != beam_runner_api_pb2.MergeStatus.NEEDS_MERGE for s in strategies
  )  # sessions are built by state and timers, not by a merging WindowFn
  assert set(proto.requirements) <= FLINK_REQUIREMENTS

  harnesses = [
    env
    for env in proto.components.environments.values()
    if env.urn == common_urns.environments.PROCESS.urn
  ]
  assert harnesses, 'the EMR configs run the SDK harness as a process'
  payload = beam_runner_api_pb2.ProcessPayload.FromString(harnesses[0].payload)
  assert payload.command == '/opt/shopstream/boot'


def test_the_stream_declares_state_and_splittable_dofns(tmp_path):
  """The requirement check above must not pass because nothing was declared."""
  config, build, flags = PIPELINES['stream on flink_emr_streaming.yaml']
  proto = proto_of(config, build, flags(tmp_path))
  assert set(proto.requirements) == {
    common_urns.requirements.REQUIRES_STATEFUL_PROCESSING.urn,
    common_urns.requirements.REQUIRES_SPLITTABLE_DOFN.urn,
  }


def stateful_steps(proto) -> set[str]:
  """The top-level steps holding a ParDo with state or timers (what a runner keeps state for)."""
  names = set()
  for transform in proto.components.transforms.values():
    if transform.spec.urn != _T.PAR_DO.urn:
      continue
    payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
    if payload.state_specs or payload.timer_family_specs:
      names.add(transform.unique_name.split('/')[0])
  return names


@pytest.mark.parametrize('name', sorted(PIPELINES))
def test_every_mode_runs_the_event_chain_in_its_order(name, tmp_path):
  """event_chain.py's steps, top level and in order (a mode's own step may sit between the
  halves); the stream's state lives in Deduplicate and Sessionize only, names a runner
  maps state by."""
  config, build, flags = PIPELINES[name]
  proto = proto_of(config, build, flags(tmp_path))
  transforms = proto.components.transforms
  top = {t.unique_name: t for t in transforms.values() if t.unique_name.count('/') == 0}
  assert set(event_chain.STEPS) <= set(top)
  producer = {pcoll: step.unique_name for step in top.values() for pcoll in step.outputs.values()}

  def upstream(step: str) -> set[str]:
    seen, todo = set(), [step]
    while todo:
      for pcoll in top[todo.pop()].inputs.values():
        if pcoll in producer and producer[pcoll] not in seen:
          seen.add(producer[pcoll])
          todo.append(producer[pcoll])
    return seen

  for earlier, later in itertools.pairwise(event_chain.STEPS):
    assert earlier in upstream(later), (earlier, later)
  assert event_chain.SESSIONIZE not in upstream(event_chain.ENRICH)
  if 'stream' in name:
    assert stateful_steps(proto) == {event_chain.DEDUPLICATE, event_chain.SESSIONIZE}
