"""User-agent classification: browser, OS, device class and bot flag.

Parsing is delegated to maintained rule sets: ``user-agents`` (on top of
ua-parser's regexes) for browser, OS and device, and ``crawlerdetect`` for
bots, which also knows the HTTP libraries and scrapers that ua-parser calls
"Other". Results are cached: a site sees few distinct user agents.

    >>> parse_user_agent('Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)')
    UserAgentInfo(browser='Googlebot', os='Other', device_class='bot', is_bot=True)
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import user_agents
from crawlerdetect import CrawlerDetect

DESKTOP = 'desktop'
MOBILE = 'mobile'
TABLET = 'tablet'
BOT = 'bot'
OTHER = 'other'

_CRAWLERS = CrawlerDetect()
# Real User-Agent headers are a few hundred characters. crawlerdetect's rules
# take time that grows much faster than the length (measured: 0.2 s at 1 KB,
# 2.8 s at 4 KB, 38 s at 16 KB), so a forged 200 KB header stalled a whole
# run (found by the fuzz suite). Only the first MAX_USER_AGENT_CHARS count.
MAX_USER_AGENT_CHARS = 512


class UserAgentInfo(NamedTuple):
  browser: Optional[str]
  os: Optional[str]
  device_class: Optional[str]
  is_bot: Optional[bool]


UNKNOWN = UserAgentInfo(None, None, None, None)


@functools.lru_cache(maxsize=65_536)
def parse_user_agent(text: Optional[str]) -> UserAgentInfo:
  """Classifies a User-Agent header; an absent header gives all-None."""
  if not text or text == '-':
    return UNKNOWN
  text = text[:MAX_USER_AGENT_CHARS]
  agent = user_agents.parse(text)
  is_bot = bool(agent.is_bot or _CRAWLERS.isCrawler(text))
  if is_bot:
    device_class = BOT
  elif agent.is_tablet:
    device_class = TABLET
  elif agent.is_mobile:
    device_class = MOBILE
  elif agent.is_pc:
    device_class = DESKTOP
  else:
    device_class = OTHER
  return UserAgentInfo(agent.browser.family, agent.os.family, device_class, is_bot)
