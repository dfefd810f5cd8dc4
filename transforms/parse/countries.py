"""Country names of legacy exports to ISO 3166-1 alpha-2 codes (pycountry).

>>> iso_country('United Kingdom'), iso_country('EIRE'), iso_country('Unspecified')
('GB', 'IE', None)
"""

from __future__ import annotations

import functools
from typing import Optional

import pycountry

# Names legacy order systems use that the ISO list does not know.
ALIASES = {
  'eire': 'IE',
  'rsa': 'ZA',
  'usa': 'US',
  'uk': 'GB',
  'great britain': 'GB',
  'england': 'GB',
  'scotland': 'GB',
  'wales': 'GB',
  'northern ireland': 'GB',
  'czech republic': 'CZ',
  'korea': 'KR',
  'russia': 'RU',
}


@functools.lru_cache(maxsize=1024)
def iso_country(name: Optional[str]) -> Optional[str]:
  """The alpha-2 code of a country name or code; None when unknown or not a country."""
  if not name or not name.strip():
    return None
  key = name.strip().lower()
  if key in ALIASES:
    return ALIASES[key]
  try:
    return pycountry.countries.lookup(name.strip()).alpha_2
  except LookupError:
    return None
