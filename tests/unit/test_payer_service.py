"""The PayerGateway over a real secured server: X12 in and out, scopes enforced, status counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.clients import PayerClient
from adapters.credentials import READER
from canonical.errors import ConfigurationError, NotRetryableError
from canonical.revenue_cycle import EligibilityResponse
from canonical.x12.acks import read_acknowledgment
from canonical.x12.envelope import read_interchanges
from canonical.x12.read import ReadStatus, read_file
from canonical.x12.write_837 import write_837
from canonical.x12.write_eligibility import write_270
from tests.grpc_security import client_settings, running_adapter
from tests.unit.test_payer import _inquiry
from tests.unit.test_x12_write import envelope, professional, submission


def test_eligibility_and_claims_over_tls_with_tokens(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_adapter("payer", tmp_path, payer_delivery_dir=tmp_path / "inbox") as adapter:
            async with PayerClient(client_settings(), adapter.address) as client:
                [answer] = await client.check_eligibility(
                    write_270([_inquiry(1)], envelope(interchange_control=11))
                )
                [reading] = read_file(answer)
                assert reading.status is ReadStatus.MAPPED
                assert isinstance(reading.models[0], EligibilityResponse)
                answers = await client.submit_claims(
                    write_837([submission(professional("P9"))], envelope(interchange_control=12))
                )
                [ack] = [read_acknowledgment(x) for a in answers for x in read_interchanges(a)]
                assert {s.verdict for g in ack.groups for s in g.sets} == {"A"}
                status = await client.get_status()
                assert (status.claims_held, status.eligibility_answered, status.claim_files_answered) == (
                    1,
                    1,
                    1,
                )
                with pytest.raises(NotRetryableError, match="INVALID_ARGUMENT"):
                    await client.submit_claims(b"not x12 at all")
            async with PayerClient(client_settings(READER), adapter.address) as reader:
                assert (await reader.get_status()).claims_held == 1
                with pytest.raises(ConfigurationError, match="PERMISSION_DENIED"):
                    await reader.submit_claims(write_837([submission(professional("P8"))], envelope()))

    asyncio.run(scenario())
