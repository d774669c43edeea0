"""Encryption in transit, for real: a self-signed certificate made in the test (SAN 127.0.0.1),
the embedded Kafka broker started with an SSL listener and a SASL_SSL (PLAIN, as Confluent Cloud
uses) listener from PEM files; the Kafka clients of ``instore.kafka`` (librdkafka) and the
aiokafka settings the Faust worker uses produce and consume over both; a client that does not
trust the certificate, or gives a wrong password, is refused; the push hub serves HTTPS with
``TLS_CERT_FILE``/``TLS_KEY_FILE``.
"""

from __future__ import annotations

import datetime
import ipaddress
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from instore import topics as t
from instore.embedded import free_port, port_open
from instore.embedded.kafka import TlsListener
from instore.kafka import (
    KafkaUnavailable,
    aiokafka_config,
    ensure_topics,
    make_consumer,
    make_producer,
    produce,
    wait_for_broker,
)
from instore.settings import Settings
from tests.conftest import child_env, instore_proc, make_settings, stop_process

pytestmark = pytest.mark.integration


def make_cert(directory: Path, name: str = "instore-test") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (it is its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("cert"))


SASL_USER, SASL_PASSWORD = "instore-app", "a-long-test-password-0123456789"


class TlsBroker:
    def __init__(self, handle: object, ssl_port: int, sasl_port: int, logs: Path) -> None:
        self.handle, self.ssl_port, self.sasl_port, self.logs = handle, ssl_port, sasl_port, logs


@pytest.fixture(scope="module")
def tls_broker(broker_factory, cert: tuple[Path, Path],
               tmp_path_factory: pytest.TempPathFactory) -> TlsBroker:
    """The embedded Kafka with SSL and SASL_SSL listeners (PEM keystore: PKCS#8 key + cert)."""
    keystore = tmp_path_factory.mktemp("keystore") / "broker.pem"
    keystore.write_bytes(cert[1].read_bytes() + cert[0].read_bytes())
    ssl_port, sasl_port = free_port(), free_port()
    handle = broker_factory(tls=[TlsListener(ssl_port, keystore),
                                 TlsListener(sasl_port, keystore, {SASL_USER: SASL_PASSWORD})])
    return TlsBroker(handle, ssl_port, sasl_port, handle.kafka.nodes[0].logs)


def _ssl_settings(port: int, ca: Path, redis_url: str = "redis://127.0.0.1:1/0") -> Settings:
    return make_settings(f"127.0.0.1:{port}", redis_url, kafka_security_protocol="SSL",
                         kafka_ssl_ca_location=str(ca), kafka_partitions=1)


def _sasl_settings(port: int, ca: Path, password: str = SASL_PASSWORD) -> Settings:
    return make_settings(f"127.0.0.1:{port}", "redis://127.0.0.1:1/0",
                         kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN",
                         kafka_sasl_username=SASL_USER, kafka_sasl_password=password,
                         kafka_ssl_ca_location=str(ca), kafka_partitions=1)


def _round_trip(settings: Settings) -> list[bytes]:
    """Create a topic, produce three records and consume them back, all over TLS."""
    wait_for_broker(settings, timeout_s=20)
    ensure_topics(settings, [t.OFFER_EVENTS])
    producer = make_producer(settings)
    delivered: list[object] = []
    for i in range(3):
        produce(producer, t.OFFER_EVENTS, f'{{"n": {i}}}'.encode(), key=f"k{i}",
                on_delivery=lambda err, msg: delivered.append(err or msg.offset()))
    assert producer.flush(20) == 0
    assert all(isinstance(d, int) for d in delivered), delivered
    consumer = make_consumer(settings)
    consumer.assign([TopicPartition(t.OFFER_EVENTS.name, 0, OFFSET_BEGINNING)])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        for msg in consumer.consume(10, 0.5):
            if msg.error() is None:
                got.append(msg.value())
    consumer.close()
    return got


def _aiokafka_round_trip(settings: Settings, topic: str) -> list[bytes]:
    """Produce and consume with aiokafka and the connection settings the Faust worker uses."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(**aiokafka_config(settings))
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(topic, f"a{i}".encode(), key=b"k", partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, **aiokafka_config(settings), group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < 3 and time.monotonic() < deadline:
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    got += [m.value for m in msgs if m.value.startswith(b"a")]
        finally:
            await consumer.stop()
        return got

    return asyncio.run(run())


def test_kafka_clients_produce_and_consume_over_tls(tls_broker: TlsBroker,
                                                    cert: tuple[Path, Path]) -> None:
    settings = _ssl_settings(tls_broker.ssl_port, cert[0])
    got = _round_trip(settings)
    assert got[:3] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert _aiokafka_round_trip(settings, t.OFFER_EVENTS.name) == [b"a0", b"a1", b"a2"]


def test_kafka_clients_over_sasl_ssl_plain(tls_broker: TlsBroker, cert: tuple[Path, Path]) -> None:
    settings = _sasl_settings(tls_broker.sasl_port, cert[0])
    wait_for_broker(settings, timeout_s=20)
    ensure_topics(settings, [t.DEAD_LETTERS])
    assert _aiokafka_round_trip(settings, t.DEAD_LETTERS.name) == [b"a0", b"a1", b"a2"]
    producer = make_producer(settings)
    produce(producer, t.DEAD_LETTERS, b'{"sasl": true}', key="k")
    assert producer.flush(20) == 0


def test_a_wrong_sasl_password_is_refused(tls_broker: TlsBroker, cert: tuple[Path, Path]) -> None:
    with pytest.raises((KafkaUnavailable, KafkaException)):
        wait_for_broker(_sasl_settings(tls_broker.sasl_port, cert[0], "wrong-password"),
                        timeout_s=5)


def test_a_client_that_does_not_trust_the_certificate_is_refused(
        tls_broker: TlsBroker, tmp_path: Path) -> None:
    other_ca, _ = make_cert(tmp_path, "someone-else")
    with pytest.raises((KafkaUnavailable, KafkaException)):
        wait_for_broker(_ssl_settings(tls_broker.ssl_port, other_ca), timeout_s=5)
    assert "SSL handshake failed" in (tls_broker.logs / "server.log").read_text()


def test_push_hub_serves_https(cert: tuple[Path, Path], tmp_path: Path,
                               kafka_bootstrap: str, redis_url: str) -> None:
    port = free_port()
    settings = make_settings(kafka_bootstrap, redis_url)
    env = child_env(settings, HUB_PORT=str(port), TLS_CERT_FILE=str(cert[0]),
                    TLS_KEY_FILE=str(cert[1]))
    log = tmp_path / "hub.log"
    proc = instore_proc(["push", "hub"], env, log)
    try:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_open("127.0.0.1", port), log.read_text()[-2000:]
        r = httpx.get(f"https://127.0.0.1:{port}/health", verify=str(cert[0]), timeout=10)
        assert r.status_code == 200 and r.json()["ok"] is True
        with pytest.raises(httpx.ConnectError):  # not trusted without the certificate
            httpx.get(f"https://127.0.0.1:{port}/health", timeout=10)
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on that port
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
    finally:
        stop_process(proc)
