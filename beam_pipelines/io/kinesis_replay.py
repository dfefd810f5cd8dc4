"""Putting canonical JSON events into a Kinesis stream (``shopstream kinesis put``).

event_replay.py makes the events of the exports and their JSON; this module
puts them, PutRecords in batches, partition key = session key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from beam_pipelines.io.event_replay import canonical_json
from transforms.records import Event

PUT_BATCH = 500  # PutRecords' limit


def put_events(client, stream: str, events: Iterator[Event], sleep=time.sleep) -> int:
  """PutRecords in batches; records the stream refuses (throttling) are sent again."""
  from beam_pipelines.io.kinesis import call_with_backoff

  sent = 0
  batch: list[dict] = []

  def flush(records: list[dict]) -> None:
    delay = 0.1
    while records:
      response = call_with_backoff(client.put_records, StreamName=stream, Records=records)
      records = [
        record
        for record, result in zip(records, response['Records'], strict=True)
        if 'ErrorCode' in result
      ]
      if records:
        sleep(delay)
        delay = min(delay * 2, 5.0)

  for event in events:
    batch.append({'Data': canonical_json(event), 'PartitionKey': event.session_key})
    if len(batch) == PUT_BATCH:
      flush(batch)
      sent += len(batch)
      batch = []
  if batch:
    flush(batch)
    sent += len(batch)
  return sent
