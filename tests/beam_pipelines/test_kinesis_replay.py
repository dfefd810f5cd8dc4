"""Replaying exports into Kinesis: canonical JSON that parses back to the same events."""

from __future__ import annotations

from collections import Counter

import apache_beam as beam
import boto3
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import cli
from beam_pipelines.io.event_replay import canonical_json, replay_events
from beam_pipelines.io.kinesis import KinesisConfig, ReadFromKinesis
from tests.conftest import NOW_US, beam_pipeline, fixture_path
from transforms.parse.parse_events import EventLineParser, ParseEventsJsonl
from transforms.records import EVENTS_TAG, RawRecord

SOURCES = [
  f'events-jsonl={fixture_path("events.jsonl")}',
  f'access-log={fixture_path("access.log")}',
]


def without_source(event):
  return event._replace(source='')


def test_canonical_json_parses_back_to_the_same_event(pseudonymizer):
  counts = Counter()
  events = list(replay_events(SOURCES, pseudonymizer, NOW_US, counts))
  assert counts == {'sent': 12, 'filtered': 6, 'dead_letter': 8}  # as in the golden files
  parse = EventLineParser('EUR', NOW_US)
  for event in events:
    again = parse(RawRecord('kinesis:s', 1, canonical_json(event), 0))
    assert without_source(again) == without_source(event)


def test_put_then_read_gives_the_batch_events(
  kinesis_endpoint, aws_credentials, pseudonymizer, capsys
):
  endpoint = ['--kinesis-endpoint-url', kinesis_endpoint, '--region', 'us-east-1']
  assert cli.main(['kinesis', 'create-stream', 'replay', '--shards', '2'] + endpoint) == 0
  put = ['kinesis', 'put', 'replay'] + [arg for s in SOURCES for arg in ('--source', s)]
  assert cli.main(put + endpoint) == 0
  assert '12 events put' in capsys.readouterr().out
  expected = [without_source(e) for e in replay_events(SOURCES, pseudonymizer, NOW_US, Counter())]
  config = KinesisConfig(
    stream='replay', endpoint_url=kinesis_endpoint, region='us-east-1', stop_after_idle_s=1.0
  )
  with beam_pipeline() as p:
    records = (
      p
      | ReadFromKinesis(config)
      | beam.Map(lambda r: RawRecord(f'kinesis:{r.stream}', 0, r.data, 0))
    )
    events = (records | ParseEventsJsonl('EUR', NOW_US))[EVENTS_TAG]
    assert_that(events | beam.Map(without_source), equal_to(expected))
  boto3.client('kinesis', endpoint_url=kinesis_endpoint, region_name='us-east-1').delete_stream(
    StreamName='replay'
  )
