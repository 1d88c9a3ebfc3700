"""The fuzz suite's hypothesis profiles: a bounded one inside ``make test``, a long one for ``make fuzz``.

``HCSYNC_FUZZ`` picks the profile: unset (or ``bounded``) keeps the whole suite under about a minute on a
2-core machine, ``long`` runs many more examples per property (minutes). The profiles are applied per test
by :data:`tests.fuzz.harness.fuzz_settings`, never loaded globally, so the unit suite's own hypothesis tests
keep their settings when everything runs in one session.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import settings

from tests.fuzz.grpc_inputs import AdapterUnderTest
from tests.fuzz.harness import PROFILES, active_profile

for _name, _profile in PROFILES.items():
    settings.register_profile(_name, _profile)


def pytest_report_header(config: pytest.Config) -> str:
    name = active_profile()
    return (
        f"hcsync fuzz profile: {name} (max_examples={settings.get_profile(name).max_examples} per property)"
    )


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    """A channel to both adapter services on a real server (grpc_inputs.AdapterUnderTest), one per module."""
    adapter = AdapterUnderTest(tmp_path_factory.mktemp("fuzz-adapters"))
    adapter.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{adapter.port}") as open_channel:
            yield open_channel
    finally:
        adapter.stop()
