"""Shared test helpers: pipelines on the FnApiRunner, a fixed salt and clock."""

from __future__ import annotations

import os

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from transforms.pseudonymize import Pseudonymizer

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
TEST_SALT = b'test-salt'
# 2026-06-01T00:00:00Z: "now" for every test, so plausibility checks are stable.
NOW_US = 1_780_272_000_000_000


def fixture_path(name: str) -> str:
  return os.path.join(FIXTURES, name)


def beam_pipeline() -> TestPipeline:
  """A TestPipeline on the FnApiRunner: the engine the direct.yaml config names."""
  return TestPipeline(runner='FnApiRunner', options=PipelineOptions([]))


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
  return Pseudonymizer(TEST_SALT)


@pytest.fixture(autouse=True)
def _test_salt(monkeypatch):
  monkeypatch.setenv('SHOPSTREAM_PII_SALT', TEST_SALT.decode())
