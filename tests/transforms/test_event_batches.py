from unittest import mock

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import beam_pipeline
from tests.transforms.helpers import make_event, table_rows
from transforms import event_batches
from transforms.records import Event, SessionRow


def some_events():
  return [
    make_event('e1', 0, price='19.99', currency='EUR', quantity=2, is_bot=False),
    make_event('e2', 1.5, key=None, user_id='u1', properties='{"a":"é"}'),
    make_event('e3', 2, is_bot=True, page_url='/p/1'),
  ]


def test_a_batch_gives_back_the_records_that_went_in():
  events = some_events()
  batch = event_batches.to_batch(Event, events)
  assert batch.schema == event_batches.schema_of(Event)
  assert event_batches.from_batch(Event, batch) == events
  assert event_batches.from_batch(Event, event_batches.to_batch(Event, [])) == []


def test_types_follow_the_record_fields():
  schema = event_batches.schema_of(SessionRow)
  assert schema.field('session_start').type == pa.int64()
  assert schema.field('duration_s').type == pa.float64()
  assert schema.field('is_bot').type == pa.bool_()
  assert schema.field('revenue').type == pa.string()  # decimal text, cast only at the sink


def test_the_wire_form_is_compressed_and_exact():
  events = some_events() * 500
  table = pa.Table.from_batches([event_batches.to_batch(Event, events)])
  encoded = event_batches.encode(table)
  assert event_batches.decode(encoded).equals(table)
  assert len(encoded) < table.nbytes / 5


def test_tables_cross_a_stage_boundary_with_their_coder():
  assert isinstance(beam.coders.registry.get_coder(pa.Table), event_batches.TableCoder)
  tables = [pa.Table.from_batches([event_batches.to_batch(Event, some_events())])]
  with beam_pipeline() as p:
    out = (
      p
      | beam.Create(tables).with_output_types(pa.Table)
      | beam.Reshuffle()
      | table_rows(Event)
      | beam.Map(lambda e: e.event_id)
    )
    assert_that(out, equal_to(['e1', 'e2', 'e3']))


@given(st.lists(st.integers(-3, 3), max_size=60))
def test_split_by_gives_each_values_rows_in_table_order(values):
  table = pa.table({'row': list(range(len(values))), 'value': values})
  parts = list(event_batches.split_by(table, np.array(values, np.int64)))
  assert [value for value, _ in parts] == sorted(set(values))
  for value, part in parts:
    assert part['row'].to_pylist() == [n for n, v in enumerate(values) if v == value]


@given(
  st.one_of(
    st.lists(st.integers(-(2**63), 2**63 - 1)).map(lambda v: pa.array(v, pa.int64())),
    st.lists(st.floats(allow_nan=False)).map(lambda v: pa.array(v, pa.float64())),
    st.lists(st.booleans()).map(lambda v: pa.array(v, pa.bool_())),
    st.lists(st.one_of(st.none(), st.booleans())).map(lambda v: pa.array(v, pa.bool_())),
  ),
  st.integers(0, 9),
)
def test_as_numpy_gives_to_numpys_values(array, start):
  sliced = array.slice(min(start, len(array)))
  expected = sliced.to_numpy(zero_copy_only=False)
  assert event_batches.as_numpy(sliced).tolist() == expected.tolist()
  assert event_batches.as_numpy(pa.chunked_array([sliced, sliced], sliced.type)).tolist() == (
    expected.tolist() * 2
  )


_TEXTS = st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=40)


@given(
  st.one_of(
    _TEXTS.map(lambda v: pa.array(v, pa.string())),
    _TEXTS.map(lambda v: pa.array(v, pa.large_string())),
    _TEXTS.map(lambda v: pa.array([t and t.encode() for t in v], pa.binary())),
    _TEXTS.map(lambda v: pa.array([t and t.encode() for t in v], pa.large_binary())),
    st.lists(st.one_of(st.none(), st.integers(-5, 5))).map(lambda v: pa.array(v, pa.int64())),
  ),
  st.integers(0, 9),
  st.integers(0, 9),
)
def test_python_values_gives_to_pylists_values(array, start, stop_before_end):
  # Sliced at both ends: the offsets and the data buffer no longer start at 0.
  start = min(start, len(array))
  sliced = array.slice(start, max(0, len(array) - start - stop_before_end))
  # Every length through the buffers, not only the long ones.
  with mock.patch.object(event_batches, '_FEWEST_FROM_BUFFERS', 0):
    assert event_batches.python_values(sliced) == sliced.to_pylist()
    assert event_batches.python_values(pa.chunked_array([sliced, sliced], sliced.type)) == (
      sliced.to_pylist() * 2
    )


def test_python_values_keeps_text_that_is_not_ascii_and_empty_strings():
  values = ['Zürich', '', None, 'ÿ', 'a'] * 10  # long enough for the buffers
  array = pa.array(values)
  assert event_batches.python_values(array) == values
  assert event_batches.python_values(array.slice(3)) == values[3:]
  assert event_batches.python_values(pa.array(values[:5])) == values[:5]
  assert event_batches.python_values(pa.array([], pa.string())) == []


def test_rows_of_takes_the_rows_and_keeps_the_array_when_they_are_all_of_them():
  array = pa.array(['a', None, 'c'])
  assert event_batches.rows_of(array, np.array([0, 2])).to_pylist() == ['a', 'c']
  assert event_batches.rows_of(array, np.array([], np.int64)).to_pylist() == []
  assert event_batches.rows_of(array, np.arange(3)) is array


_SMALL_VALUES = st.one_of(st.none(), st.sampled_from(['a', 'b', 'c', '']))


@given(
  st.integers(1, 3).flatmap(
    lambda width: st.lists(st.tuples(*[_SMALL_VALUES] * width), max_size=30)
  ),
  st.integers(1, 2),
  st.booleans(),
)
def test_map_distinct_equals_the_function_of_every_row_called_once_per_combination(
  rows, chunks, encoded
):
  width = len(rows[0]) if rows else 1
  columns = [[row[i] for row in rows] for i in range(width)]
  cut = len(rows) // chunks
  arrays = [pa.chunked_array([c[:cut], c[cut:]], pa.string()) for c in columns]
  if encoded:  # as enrichment passes a column that several calls share
    arrays = [event_batches.dictionary_encoded(array) for array in arrays]
  calls = []

  def joined(*values):
    calls.append(values)
    return '|'.join(repr(v) for v in values), len(calls)

  texts, _ = event_batches.map_distinct(arrays, joined, [pa.string(), pa.int64()])
  assert texts.to_pylist() == ['|'.join(repr(v) for v in row) for row in rows]
  assert sorted(calls, key=repr) == sorted(set(rows), key=repr)
