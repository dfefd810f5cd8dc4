import json

import apache_beam as beam
import pyarrow as pa
import pytest
import referer_parser
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import beam_pipeline
from tests.transforms.helpers import make_event
from transforms.enrich.events import EnrichEvents, enrich_event, enrich_table
from transforms.enrich.geo import country_for_ip
from transforms.enrich.marketing import (
  NEWER_REFERRERS,
  Utm,
  classify_channel,
  known_referrers,
  referrer_host,
  utm_parameters,
)
from transforms.enrich.user_agent import parse_user_agent
from transforms.event_batches import from_batch, map_distinct, to_batch
from transforms.records import Event

IPHONE = (
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 '
  '(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1'
)
IPAD = (
  'Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) '
  'Version/17.4 Mobile/15E148 Safari/604.1'
)
CHROME = (
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) '
  'Chrome/124.0.0.0 Safari/537.36'
)


def test_user_agents():
  assert parse_user_agent(IPHONE) == ('Mobile Safari', 'iOS', 'mobile', False)
  assert parse_user_agent(IPAD).device_class == 'tablet'
  assert parse_user_agent(CHROME)[::2] == ('Chrome', 'desktop')
  assert parse_user_agent('python-requests/2.31.0').is_bot
  assert parse_user_agent('Mozilla/5.0 (compatible; bingbot/2.0)').device_class == 'bot'
  assert parse_user_agent(None) == (None, None, None, None)


def test_countries():
  assert country_for_ip('81.2.69.142') == 'GB'
  assert country_for_ip('8.8.8.8') == 'US'
  assert country_for_ip('192.168.1.1') is None
  assert country_for_ip('not an ip') is None


def test_utm_and_channels():
  utm = utm_parameters('https://s.example/?utm_source=Google&utm_medium=CPC&utm_campaign=x')
  assert utm == Utm('google', 'cpc', 'x', None, None)
  assert utm_parameters('https://s.example/p/1') == Utm()
  assert referrer_host('https://www.Google.com/search?q=1') == 'google.com'
  assert referrer_host('-') is None
  assert classify_channel(utm, 'google.com', 's.example') == 'paid_search'
  assert classify_channel(Utm(), 'google.co.uk', 's.example') == 'organic_search'
  assert classify_channel(Utm(), 'facebook.com', 's.example') == 'social'
  assert classify_channel(Utm(), None, 's.example') == 'direct'
  assert classify_channel(Utm(), 's.example', 's.example') == 'internal'
  assert classify_channel(Utm(), 'blog.example.org', 's.example') == 'referral'
  assert classify_channel(Utm(medium='email'), None, None) == 'email'


def test_enrichment_fills_columns_and_removes_raw_pii(pseudonymizer):
  raw = make_event(
    'e1',
    0,
    user_id='Jane.Doe@example.com',
    ip='81.2.69.142',
    user_agent=IPHONE,
    page_url='https://shop.example/?utm_source=newsletter&utm_medium=email&e=jane%40example.com',
    properties='{"contact":"jane@example.com","ip":"81.2.69.142"}',
  )
  event = enrich_event(raw, pseudonymizer, 'shop.example')
  assert (event.browser, event.os, event.device_class, event.is_bot) == (
    'Mobile Safari',
    'iOS',
    'mobile',
    False,
  )
  assert (event.country, event.channel, event.utm_source, event.utm_medium) == (
    'GB',
    'email',
    'newsletter',
    'email',
  )
  assert event.ip is None and event.user_agent is None
  assert event.user_id == pseudonymizer.token('jane.doe@example.com')
  text = repr(event)
  assert '@' not in text and '%40' not in text and '81.2.69.142' not in text
  assert event.event_id == raw.event_id and event.event_time == raw.event_time


def test_pipeline(pseudonymizer):
  with beam_pipeline() as p:
    out = (
      p
      | beam.Create([make_event('e1', 0, ip='8.8.8.8', user_agent=CHROME)])
      | EnrichEvents(pseudonymizer)
    )
    assert_that(
      out | beam.Map(lambda e: (e.country, e.device_class, e.ip)),
      equal_to([('US', 'desktop', None)]),
    )


def test_a_huge_user_agent_is_judged_by_its_first_512_characters():
  """A forged 200 KB header once stalled a run in crawlerdetect's rules (fuzz suite)."""
  from transforms.enrich.user_agent import MAX_USER_AGENT_CHARS, parse_user_agent

  head = 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html) '
  huge = head + 'x' * 200_000
  assert parse_user_agent(huge) == parse_user_agent(huge[:MAX_USER_AGENT_CHARS])
  assert parse_user_agent(huge).is_bot


def test_the_table_form_gives_enrich_event_for_every_row(pseudonymizer):
  agents = [IPHONE, IPAD, CHROME, None, 'curl/8.0', IPHONE]
  referrers = [None, 'https://www.google.com/', 'https://shop.example/cart', 'https://t.co/x']
  pages = [
    'https://shop.example/?utm_source=newsletter&utm_medium=email',
    '/p/1',
    None,
    'https://shop.example/c/12?utm_medium=cpc&utm_source=google',
  ]
  events = [
    make_event(
      f'e{n}',
      n,
      user_id=['Jane.Doe@example.com', None, 'C-1'][n % 3],
      ip=['81.2.69.142', '8.8.8.8', None, '10.0.0.1', '2001:4860:4860::8888'][n % 5],
      user_agent=agents[n % len(agents)],
      page_url=pages[n % len(pages)],
      referrer=referrers[(n // 2) % len(referrers)],
      properties=[None, '{"mail":"a@b.example"}'][n % 2],
    )
    for n in range(60)
  ]
  table = pa.Table.from_batches([to_batch(Event, events)])
  for site_host in (None, 'shop.example'):
    enriched = from_batch(Event, enrich_table(table, pseudonymizer, site_host))
    assert enriched == [enrich_event(event, pseudonymizer, site_host) for event in events]


def test_map_distinct_calls_once_per_distinct_combination():
  calls = []

  def pair(a, b):
    calls.append((a, b))
    return f'{a}-{b}'

  left = pa.chunked_array([['x', 'y', None], ['x', 'x']])
  right = pa.chunked_array([['1', '1', '2'], [None, '1']])
  (joined,) = map_distinct([left, right], pair, [pa.string()])
  assert joined.to_pylist() == ['x-1', 'y-1', 'None-2', 'x-None', 'x-1']
  assert sorted(calls, key=repr) == sorted(
    [('x', '1'), ('y', '1'), (None, '2'), ('x', None)], key=repr
  )


@pytest.mark.parametrize(
  'host, channel',
  [
    ('t.coolblog.org', 'referral'),  # not t.co: hosts match by whole labels
    ('mail.google.com', 'email'),  # webmail, not a search engine
    ('google.de', 'organic_search'),
    ('news.google.com', 'organic_search'),  # a parent domain's entry
    ('l.facebook.com', 'social'),
    ('mail.yahoo.com', 'email'),
    ('x.com', 'social'),  # newer than the data set: NEWER_REFERRERS
    ('example-google.com', 'referral'),
  ],
)
def test_referrer_hosts_are_classified_by_the_referer_parser_data_set(host, channel):
  assert classify_channel(Utm(), host, 'shop.example') == channel


def test_the_data_set_is_loaded_whole_and_the_supplement_only_adds_what_it_lacks():
  with open(referer_parser.JSON_FILE, encoding='utf-8') as f:
    dataset = {
      domain.split('/', 1)[0].lower().removeprefix('www.')
      for referrers in json.load(f).values()
      for config in referrers.values()
      for domain in config['domains']
    }
  known = known_referrers()
  assert dataset <= set(known) and len(dataset) > 500
  assert set(NEWER_REFERRERS).isdisjoint(dataset)
  assert {known[h] for h in dataset} >= {'organic_search', 'social', 'email'}
