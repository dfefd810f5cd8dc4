"""Read rate of the Kinesis source per shard, against kinesis-local (a command, not a test).

    python benchmarks/kinesis_read_rate.py --records 20000 --shards 1

Starts kinesis-local (node_modules, installed by make) on free ports, puts
N canonical-looking JSON records with PutRecords, then drives ReadKinesisStream
as a runner would and reports records/s per shard for the read alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import boto3  # noqa: E402
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator  # noqa: E402
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker  # noqa: E402

from beam_pipelines.dev.kinesis_emulator import running_emulator  # noqa: E402
from beam_pipelines.io.kinesis import (  # noqa: E402
  CheckpointTracker,
  KinesisConfig,
  ReadKinesisStream,
  StreamCheckpoint,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--records', type=int, default=20_000)
  parser.add_argument('--shards', type=int, default=1)
  args = parser.parse_args()
  os.environ.setdefault('AWS_ACCESS_KEY_ID', 'bench')
  os.environ.setdefault('AWS_SECRET_ACCESS_KEY', 'bench')
  with running_emulator() as endpoint:
    kinesis = boto3.client('kinesis', endpoint_url=endpoint, region_name='us-east-1')
    kinesis.create_stream(StreamName='bench', ShardCount=args.shards)
    kinesis.get_waiter('stream_exists').wait(StreamName='bench', WaiterConfig={'Delay': 0.2})
    started = time.monotonic()
    for start in range(0, args.records, 500):
      kinesis.put_records(
        StreamName='bench',
        Records=[
          {
            'Data': json.dumps(
              {
                'event_id': f'e{n}',
                'event_type': 'page_view',
                'event_time': 1772359200 + n,
                'anonymous_id': f'a{n % 997}',
              }
            ).encode(),
            'PartitionKey': f'a{n % 997}',
          }
          for n in range(start, min(start + 500, args.records))
        ],
      )
    put_s = time.monotonic() - started

    reader = ReadKinesisStream(
      KinesisConfig(
        stream='bench', endpoint_url=endpoint, region='us-east-1', stop_after_idle_s=0.5
      )
    )
    reader.setup()
    tracker = ThreadsafeRestrictionTracker(CheckpointTracker(StreamCheckpoint()))
    started = time.monotonic()
    read = sum(
      1
      for _ in reader.process(
        '', tracker=RestrictionTrackerView(tracker), watermark=ManualWatermarkEstimator(None)
      )
    )
    read_s = time.monotonic() - started - 0.5  # less the idle wait that ends the read
    print(
      json.dumps(
        {
          'records': args.records,
          'shards': args.shards,
          'read': read,
          'put_records_per_s': round(args.records / put_s),
          'read_records_per_s': round(read / read_s),
          'read_records_per_s_per_shard': round(read / read_s / args.shards),
        },
        indent=2,
      )
    )


if __name__ == '__main__':
  main()
