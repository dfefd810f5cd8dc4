"""Country from IP address, offline, with the RIR data the ``iptocc`` package ships.

>>> country_for_ip('8.8.8.8')
'US'
>>> country_for_ip('10.1.2.3') is None
True
"""

from __future__ import annotations

import functools
from typing import Optional

import iptocc


@functools.lru_cache(maxsize=262_144)
def country_for_ip(ip: Optional[str]) -> Optional[str]:
  """ISO 3166-1 alpha-2 code, or None for private, reserved or invalid addresses."""
  if not ip:
    return None
  return iptocc.country_code(ip)
