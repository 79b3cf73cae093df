"""Fixtures for the fake-server tests."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from voiceengine.testing import FakeRealtimeServer, FakeServerConfig


@pytest.fixture
async def server() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(FakeServerConfig(speed=float("inf"))) as srv:
        yield srv


@pytest.fixture
async def manual_server() -> AsyncIterator[FakeRealtimeServer]:
    async with FakeRealtimeServer(FakeServerConfig(speed=float("inf"), turn_detection=None)) as srv:
        yield srv
