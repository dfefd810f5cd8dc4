"""Marketing attribution: UTM parameters, referrer host and channel.

The channel follows the usual default channel grouping of web analytics:
UTM medium first (paid, email, social, affiliate), then the referrer's kind,
else direct. A referrer's kind comes from Snowplow's referer-parser data set
(search engines, social networks, webmail), looked up by its host and then
by each parent domain (mail.google.com is webmail, not search); the site's
own host (the page URL's, or ``--site-host`` for bare paths) is internal;
any other host is a referral.

    >>> utm = utm_parameters('https://shop.example/p/1?utm_source=google&utm_medium=cpc')
    >>> utm.source, utm.medium
    ('google', 'cpc')
    >>> classify_channel(utm, referrer_host('https://www.google.com/'), 'shop.example')
    'paid_search'
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional
from urllib.parse import parse_qs, urlsplit

DIRECT = 'direct'
ORGANIC_SEARCH = 'organic_search'
PAID_SEARCH = 'paid_search'
SOCIAL = 'social'
PAID_SOCIAL = 'paid_social'
EMAIL = 'email'
AFFILIATE = 'affiliate'
DISPLAY = 'display'
REFERRAL = 'referral'
INTERNAL = 'internal'

# referer-parser's mediums as channels; its 'unknown' ones are referrals.
REFERER_MEDIUMS = {'search': ORGANIC_SEARCH, 'social': SOCIAL, 'email': EMAIL}
# Hosts newer than the data set PyPI's referer-parser 0.4.1 ships (the newest
# Snowplow publishes there; its live copy is on S3, out of reach here): only
# what it lacks, never a change to what it says.
NEWER_REFERRERS = {
  'x.com': SOCIAL,
  'tiktok.com': SOCIAL,
  'threads.net': SOCIAL,
  'bsky.app': SOCIAL,
  'qwant.com': ORGANIC_SEARCH,
  'outlook.live.com': EMAIL,
}
PAID_MEDIUMS = frozenset({'cpc', 'ppc', 'paid', 'paidsearch', 'paid_search', 'sem'})
PAID_SOCIAL_MEDIUMS = frozenset({'paid_social', 'paidsocial', 'social_paid'})
DISPLAY_MEDIUMS = frozenset({'display', 'banner', 'cpm'})


class Utm(NamedTuple):
  source: Optional[str] = None
  medium: Optional[str] = None
  campaign: Optional[str] = None
  term: Optional[str] = None
  content: Optional[str] = None


NO_UTM = Utm()


def utm_parameters(page_url: Optional[str]) -> Utm:
  """The utm_* query parameters of a landing URL (lower-cased, first value)."""
  if not page_url or 'utm_' not in page_url:
    return NO_UTM
  query = parse_qs(urlsplit(page_url).query)

  def first(name: str) -> Optional[str]:
    values = query.get(name)
    return values[0].strip().lower() or None if values else None

  return Utm(
    first('utm_source'),
    first('utm_medium'),
    first('utm_campaign'),
    first('utm_term'),
    first('utm_content'),
  )


@functools.lru_cache(maxsize=65_536)
def referrer_host(url: Optional[str]) -> Optional[str]:
  """Lower-case host of a URL without a leading ``www.``; None when absent."""
  if not url or url == '-':
    return None
  try:
    host = urlsplit(url if '//' in url else '//' + url).hostname
  except ValueError:
    return None
  if not host:
    return None
  return host[4:] if host.startswith('www.') else host


@functools.cache
def known_referrers() -> dict[str, str]:
  """Host -> channel of every host in referer-parser's data set."""
  import json

  from referer_parser import JSON_FILE

  with open(JSON_FILE, encoding='utf-8') as f:
    data = json.load(f)
  hosts = {}
  for medium, referrers in data.items():
    for config in referrers.values():
      for domain in config['domains']:
        host = domain.split('/', 1)[0].lower()  # a few name a path too: the host decides
        hosts.setdefault(host.removeprefix('www.'), REFERER_MEDIUMS.get(medium, REFERRAL))
  return {**NEWER_REFERRERS, **hosts}


@functools.lru_cache(maxsize=65_536)
def _host_kind(host: str) -> str:
  """The channel of a referrer host: its own entry, else its nearest parent domain's."""
  known = known_referrers()
  labels = host.split('.')
  for start in range(len(labels) - 1):
    kind = known.get('.'.join(labels[start:]))
    if kind is not None:
      return kind
  return REFERRAL


def classify_channel(utm: Utm, ref_host: Optional[str], page_host: Optional[str]) -> str:
  """The marketing channel that brought a visitor to a page."""
  medium = utm.medium
  if medium:
    if medium in PAID_MEDIUMS:
      return PAID_SOCIAL if ref_host and _host_kind(ref_host) == SOCIAL else PAID_SEARCH
    if medium in PAID_SOCIAL_MEDIUMS:
      return PAID_SOCIAL
    if medium in DISPLAY_MEDIUMS:
      return DISPLAY
    if medium in ('email', 'e-mail', 'newsletter'):
      return EMAIL
    if medium in ('affiliate', 'affiliates', 'partner'):
      return AFFILIATE
    if medium in ('social', 'social-network', 'sm'):
      return SOCIAL
  if not ref_host:
    return EMAIL if utm.source in ('newsletter', 'email') else DIRECT
  if page_host and ref_host == page_host:
    return INTERNAL
  return _host_kind(ref_host)
