import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import NOW_US, beam_pipeline
from tests.golden import assert_matches_golden, outcomes
from transforms.dead_letters import RecordFiltered
from transforms.event_time import EventTimeError, parse_event_time
from transforms.parse.parse_access_log import (
  AccessLogParser,
  ParseAccessLog,
  filter_reason,
  page_request,
  parse_log_time,
  request_path,
  route,
)
from transforms.records import DEAD_LETTER_TAG, EVENTS_TAG, RawRecord

SOURCE = 'access-log:fixtures/access.log'


def test_log_time():
  assert parse_log_time('01/Mar/2026:10:00:00 +0100') == parse_event_time('2026-03-01T09:00:00Z')
  assert parse_log_time('28/Feb/2026:23:30:00 -0230') == parse_event_time('2026-03-01T02:00:00Z')
  for bad in ('31/Feb/2026:10:00:00 +0100', '01/Foo/2026:10:00:00 +0100', '2026-03-01'):
    with pytest.raises(EventTimeError):
      parse_log_time(bad)


@pytest.mark.parametrize(
  'method,path,status,reason',
  [
    ('GET', '/product/1', 200, None),
    ('POST', '/cart/add', 303, None),
    ('GET', '/old', 301, 'status_3xx'),
    ('GET', '/gone', 404, 'status_4xx'),
    ('GET', '/', 503, 'status_5xx'),
    ('GET', '/static/app.CSS', 200, 'static_asset'),
    ('GET', '/favicon.ico', 200, 'static_asset'),
    ('HEAD', '/', 200, 'non_page_method'),
    ('GET', '/v1.2/page', 200, None),
  ],
)
def test_filter_reason(method, path, status, reason):
  assert filter_reason(method, path, status) == reason


@pytest.mark.parametrize(
  'path,event_type,ids',
  [
    ('/product/SKU-1', 'product_view', {'product_id': 'SKU-1'}),
    ('/p/a%20b/', 'product_view', {'product_id': 'a b'}),
    ('/cart/add', 'add_to_cart', {}),
    ('/checkout/complete', 'purchase', {}),
    ('/search', 'search', {}),
    ('/category/12', 'page_view', {'category_id': '12'}),
    ('/about', 'page_view', {}),
  ],
)
def test_route(path, event_type, ids):
  assert route(path) == (event_type, ids)


def test_golden_fixture(pseudonymizer):
  results = outcomes(AccessLogParser(pseudonymizer, NOW_US), 'access.log', SOURCE)
  assert_matches_golden(results, 'access.golden.json')
  by_line = {r['line']: r for r in results}
  landing, product, cart, purchase = (by_line[n]['event'] for n in (1, 3, 4, 5))
  assert landing['event_type'] == 'page_view' and landing['ip'] == '81.2.69.142'
  # One visitor (IP + user agent) is one session key, whatever the login state.
  assert landing['anonymous_id'] == cart['anonymous_id'] == purchase['anonymous_id']
  assert landing['anonymous_id'].startswith('pii-')
  assert (product['event_type'], product['product_id']) == ('product_view', 'SKU-7')
  assert (cart['event_type'], cart['product_id'], cart['quantity'], cart['user_id']) == (
    'add_to_cart',
    'SKU-7',
    3,
    'C-77',
  )
  assert (purchase['event_type'], purchase['order_id']) == ('purchase', 'O-9')
  assert by_line[2] == {'line': 2, 'filtered': 'static_asset'}
  assert by_line[6]['event']['category_id'] == '12'
  assert [by_line[n]['filtered'] for n in (7, 8, 9)] == [
    'status_3xx',
    'non_page_method',
    'status_4xx',
  ]
  assert by_line[10]['dead_letter'] == 'malformed_log_line'
  assert by_line[11]['dead_letter'] == 'invalid_event_time'
  assert by_line[12] == {'line': 12, 'filtered': 'status_4xx'}  # a TLS probe
  assert by_line[13]['event']['event_type'] == 'search'


def test_pipeline_routes_events_and_dead_letters(pseudonymizer):
  lines = [
    b'81.2.69.142 - - [01/Mar/2026:10:00:00 +0100] "GET /p/1 HTTP/1.1" 200 5 "-" "curl/8.4.0"',
    b'81.2.69.142 - - [01/Mar/2026:10:00:00 +0100] "GET /a.js HTTP/1.1" 200 5 "-" "curl/8.4.0"',
    b'not a log line',
  ]
  with beam_pipeline() as p:
    records = p | beam.Create([RawRecord(SOURCE, n, line, 0) for n, line in enumerate(lines, 1)])
    parsed = records | ParseAccessLog(pseudonymizer, NOW_US)
    assert_that(
      parsed[EVENTS_TAG] | 'Types' >> beam.Map(lambda e: (e.event_type, e.product_id)),
      equal_to([('product_view', '1')]),
      label='events',
    )
    assert_that(
      parsed[DEAD_LETTER_TAG] | 'Letters' >> beam.Map(lambda d: (d.position, d.reason)),
      equal_to([('3', 'malformed_log_line')]),
      label='dead letters',
    )


@pytest.mark.parametrize(
  'target, path',
  [
    ('//favicon.ico', '/favicon.ico'),  # a path, not a host named favicon.ico
    ('/static//css/site.css?v=3', '/static/css/site.css'),
    ('/a/./b/../product/SKU-1', '/a/product/SKU-1'),
    ('/../../etc', '/etc'),
    ('/category/shoes/', '/category/shoes/'),
    ('/category/shoes/.', '/category/shoes/'),
    ('http://shop.example//img/logo.png', '/img/logo.png'),
    ('/search?q=a//b#top', '/search'),
  ],
)
def test_request_paths_are_normalised_as_a_server_resolves_them(target, path):
  assert request_path(target)[0] == path


def test_a_favicon_behind_a_double_slash_is_a_static_asset_not_a_page_view():
  for target in ('//favicon.ico', '/shop//img/a.PNG', '/a/../logo.svg?x=1'):
    with pytest.raises(RecordFiltered, match='static_asset'):
      page_request('GET', target, 200)
  assert page_request('GET', '/product//SKU-1', 200).product_id == 'SKU-1'
