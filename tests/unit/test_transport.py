"""streams.transport: which Faust transport each broker gets (the behaviour is tested on the real broker in
tests/integration/test_table_recovery.py)."""

from __future__ import annotations

from faust.transport.drivers import aiokafka as driver
from pydantic import SecretStr

from foundation.settings import Settings
from streams.transport import EmbeddedBrokerTransport, Transport, app_class


def test_the_embedded_broker_gets_end_offsets_from_fetch_responses() -> None:
    settings = Settings()
    assert settings.embedded_broker
    app = app_class(settings)("t-embedded", broker=f"kafka://{settings.bootstrap}")
    assert type(app.transport) is EmbeddedBrokerTransport
    assert type(app.consumer) is not driver.Consumer  # the one whose recovery end offsets come from fetch
    assert isinstance(app.producer, Transport.Producer) and Transport.Producer is not driver.Producer


def test_a_real_kafka_keeps_list_offsets_and_gets_the_draining_producer() -> None:
    settings = Settings(kafka_bootstrap="kafka-1:9092", encounter_ref_key=SecretStr("a-key-of-our-own-" * 2))
    app = app_class(settings)("t-kafka", broker=f"kafka://{settings.bootstrap}")
    assert type(app.transport) is Transport
    assert type(app.consumer) is driver.Consumer
    assert isinstance(app.producer, Transport.Producer)
