"""EnrichEvents: user agent, country, marketing channel, and PII pseudonymisation.

Enrichment is the last step that sees a raw IP or user agent: it derives
browser, os, device_class, is_bot and country from them and then drops them,
and replaces e-mail or IP addresses in ids, URLs and properties with salted
tokens (see pseudonymize.py). Everything downstream is PII-free.

    events | EnrichEvents(Pseudonymizer(salt), site_host='shop.example')
"""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
import pyarrow as pa

from transforms.enrich.geo import country_for_ip
from transforms.enrich.marketing import Utm, classify_channel, referrer_host, utm_parameters
from transforms.enrich.pseudonymize import Pseudonymizer
from transforms.enrich.user_agent import parse_user_agent
from transforms.event_batches import dictionary_encoded, map_distinct
from transforms.records import Event

_INDEX = {name: i for i, name in enumerate(Event._fields)}
_USER_ID, _ANONYMOUS_ID, _PAGE_URL, _REFERRER, _PROPERTIES, _COUNTRY, _CHANNEL, _IP, _USER_AGENT = (
  _INDEX[name]
  for name in (
    'user_id',
    'anonymous_id',
    'page_url',
    'referrer',
    'properties',
    'country',
    'channel',
    'ip',
    'user_agent',
  )
)
# Runs of adjacent columns, filled with one slice assignment each.
_AGENT = slice(_INDEX['browser'], _INDEX['is_bot'] + 1)
_UTM = slice(_INDEX['utm_source'], _INDEX['utm_content'] + 1)
assert Event._fields[_AGENT] == ('browser', 'os', 'device_class', 'is_bot')
assert Event._fields[_UTM] == tuple(f'utm_{name}' for name in Utm._fields)


def page_host(page_url: Optional[str], site_host: Optional[str]) -> Optional[str]:
  """The host a page was served from: its URL's, or the site's for a bare path."""
  return referrer_host(page_url) if page_url and '//' in page_url else site_host


def channel_of(page_url: Optional[str], referrer: Optional[str], site_host: Optional[str]) -> str:
  return classify_channel(
    utm_parameters(page_url), referrer_host(referrer), page_host(page_url, site_host)
  )


def enrich_event(event: Event, pseudonymizer: Pseudonymizer, site_host: Optional[str]) -> Event:
  """The event with derived columns filled and raw PII removed."""
  page_url = event.page_url
  scrub = pseudonymizer.scrub
  # Filled by position: a 30-keyword constructor or _replace costs more than
  # the enrichment itself (measured).
  row = list(event)
  row[_USER_ID] = scrub(event.user_id)
  row[_ANONYMOUS_ID] = scrub(event.anonymous_id)
  row[_PAGE_URL] = scrub(page_url)
  row[_REFERRER] = scrub(event.referrer)
  row[_PROPERTIES] = scrub(event.properties)
  row[_AGENT] = parse_user_agent(event.user_agent)
  row[_UTM] = utm_parameters(page_url)
  row[_COUNTRY] = country_for_ip(event.ip)
  row[_CHANNEL] = channel_of(page_url, event.referrer, site_host)
  row[_IP] = None
  row[_USER_AGENT] = None
  return Event._make(row)


def enrich_table(
  events: pa.Table, pseudonymizer: Pseudonymizer, site_host: Optional[str]
) -> pa.Table:
  """enrich_event for a table of Events (event_batches), one call per distinct value."""
  scrub = pseudonymizer.scrub
  string, boolean = pa.string(), pa.bool_()
  # Encoded once for the three steps that read the page URL and the two that read the referrer.
  page_url, referrer = (
    dictionary_encoded(events['page_url']),
    dictionary_encoded(events['referrer']),
  )
  derived = {
    name: map_distinct([column], scrub, [string])[0]
    for name, column in (
      ('user_id', events['user_id']),
      ('anonymous_id', events['anonymous_id']),
      ('page_url', page_url),
      ('referrer', referrer),
      ('properties', events['properties']),
    )
  }
  agent = map_distinct([events['user_agent']], parse_user_agent, [string, string, string, boolean])
  derived.update(zip(Event._fields[_AGENT], agent, strict=True))
  utm = map_distinct([page_url], utm_parameters, [string] * len(Utm._fields))
  derived.update(zip(Event._fields[_UTM], utm, strict=True))
  derived['country'] = map_distinct([events['ip']], country_for_ip, [string])[0]
  (derived['channel'],) = map_distinct(
    [page_url, referrer],
    lambda page_url, referrer: channel_of(page_url, referrer, site_host),
    [string],
  )
  derived['ip'] = derived['user_agent'] = pa.nulls(events.num_rows, string)
  return pa.Table.from_arrays(
    [derived.get(name, events[name]) for name in events.schema.names], schema=events.schema
  )


class EnrichEvents(beam.PTransform):
  """Events to enriched, pseudonymised Events (one in, one out); tables of Events
  (event_batches) to enriched tables."""

  def __init__(self, pseudonymizer: Pseudonymizer, site_host: Optional[str] = None):
    super().__init__()
    self._pseudonymizer = pseudonymizer
    self._site_host = site_host

  def expand(self, events):
    if events.element_type is pa.Table:
      return events | 'EnrichTables' >> beam.Map(
        enrich_table, self._pseudonymizer, self._site_host
      ).with_output_types(pa.Table)
    return events | 'EnrichAndPseudonymize' >> beam.Map(
      enrich_event, self._pseudonymizer, self._site_host
    ).with_output_types(Event)
