import orjson
import pytest

from transforms.dead_letters import RecordError
from transforms.parse.normalize import canonical_event, content_id, to_money, to_quantity

NOW = 1_780_272_000_000_000


def event(obj, **kwargs):
  return canonical_event(obj, source='test', default_currency='EUR', now_us=NOW, **kwargs)


BASE = {'event_type': 'page_view', 'event_time': '2026-03-01T12:00:00Z', 'anonymous_id': 'a1'}


def test_minimal_event():
  e = event(BASE)
  assert (e.event_type, e.event_time, e.anonymous_id, e.user_id) == (
    'page_view',
    1_772_366_400_000_000,
    'a1',
    None,
  )
  assert e.event_id.startswith('h-') and e.source == 'test'


def test_derived_event_id_depends_on_content_not_formatting():
  reordered = dict(reversed(list(BASE.items())))
  assert event(BASE).event_id == event(reordered).event_id
  assert event(BASE).event_id != event({**BASE, 'anonymous_id': 'a2'}).event_id


def test_content_id_is_blake2b_of_the_content_and_leaves_the_shared_hash_empty():
  import hashlib

  contents = [b'', b'a', b'10.0.0.1 - - [01/Mar/2026:10:00:00 +0100] "GET /"', bytes(range(256))]
  ids = [content_id(c) for c in contents]
  assert ids == ['h-' + hashlib.blake2b(c, digest_size=16).hexdigest() for c in contents]
  # The known blake2b-128 of nothing, after other contents: the shared hash was never updated.
  assert content_id(b'') == 'h-cae66941d9efbd404e4d88758ea67670'


def test_given_event_id_is_kept_and_numbers_become_strings():
  e = event({**BASE, 'event_id': 123, 'user_id': 77, 'product_id': 'P1 '})
  assert (e.event_id, e.user_id, e.product_id) == ('123', '77', 'P1')


def test_money_is_a_canonical_decimal_with_default_currency():
  assert event({**BASE, 'price': 19.99}).price == '19.99'
  assert event({**BASE, 'price': '5'}).price == '5'
  assert event({**BASE, 'price': '5.50'}).currency == 'EUR'
  assert event({**BASE, 'price': '5.50', 'currency': 'usd'}).currency == 'USD'
  assert event(BASE).currency is None  # no price, no currency


@pytest.mark.parametrize('value', ['free', '-1', float('inf'), '1.00001', True, [1]])
def test_bad_money(value):
  with pytest.raises(Exception) as e:
    to_money('price', value)
  assert getattr(e.value, 'code', None) == 'invalid_price'


@pytest.mark.parametrize('value,expected', [(2, 2), ('3', 3), (4.0, 4)])
def test_quantity(value, expected):
  assert to_quantity('quantity', value) == expected


@pytest.mark.parametrize('value', [0, -1, 1.5, 'two', True, float('nan'), 10**7])
def test_bad_quantity(value):
  with pytest.raises(Exception) as e:
    to_quantity('quantity', value)
  assert e.value.code == 'invalid_quantity'


def test_unknown_fields_and_properties_are_kept_as_sorted_json():
  e = event({**BASE, 'zeta': 1, 'properties': {'b': [1, 2], 'a': None}})
  assert orjson.loads(e.properties) == {'a': None, 'b': [1, 2], 'zeta': 1}
  assert e.properties.index('"a"') < e.properties.index('"b"') < e.properties.index('"zeta"')


def test_every_problem_of_a_record_is_reported():
  with pytest.raises(RecordError) as e:
    event({'event_time': '2999-01-01T00:00:00Z', 'price': 'free', 'quantity': -1})
  codes = e.value.reason.split(',')
  assert sorted(codes) == sorted(
    [
      'invalid_price',
      'invalid_quantity',
      'missing_event_type',
      'clock_skew',
      'missing_identity',
    ]
  )
  assert e.value.event_time is None  # an absurd time is no partition day


def test_readable_time_is_kept_on_rejection():
  with pytest.raises(RecordError) as e:
    event({**BASE, 'event_type': 'teleport'})
  assert e.value.reason == 'unknown_event_type'
  assert e.value.event_time == 1_772_366_400_000_000


def test_wrong_types():
  with pytest.raises(RecordError) as e:
    event({**BASE, 'anonymous_id': {'x': 1}, 'event_type': 7, 'properties': 'nope'})
  assert set(e.value.reason.split(',')) == {
    'invalid_type',
    'missing_event_type',
    'invalid_properties',
  }


def test_huge_fields_are_rejected_not_truncated():
  with pytest.raises(RecordError) as e:
    event({**BASE, 'page_url': 'x' * 10_000})
  assert e.value.reason == 'field_too_long'
