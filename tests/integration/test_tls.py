"""Encryption in transit, for real: a self-signed certificate made in the test; the Kafka
clients of ``instore.kafka`` with ``KAFKA_SECURITY_PROTOCOL=SSL`` + ``KAFKA_SSL_CA_LOCATION``
produce and consume over TLS; a client that does not trust the certificate is refused; the push
hub serves HTTPS with ``TLS_CERT_FILE``/``TLS_KEY_FILE``.

Tansu 0.6.0 (the embedded broker we ship) cannot be started with TLS: its command line declares
``--cert`` and ``--key`` as conflicting arguments, so it exits with "the argument '--cert <CERT>'
cannot be used with '--key <KEY>'", and ``--cert`` alone leaves the listener in plain text. That
test is an xfail with the broker's own error text; the client test runs against the same Tansu
behind a TLS terminator in the test (as a load balancer or stunnel would sit in front of a
broker), which is what proves our clients' SSL settings work with librdkafka here.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from instore import topics as t
from instore.embedded import free_port, port_open, tansu_argv
from instore.kafka import (
    KafkaUnavailable,
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


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return make_cert(tmp_path)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if port_open("127.0.0.1", port):
            return True
        time.sleep(0.05)
    return False


def _ssl_settings(port: int, ca: Path, redis_url: str = "redis://127.0.0.1:1/0") -> Settings:
    return make_settings(f"127.0.0.1:{port}", redis_url, kafka_security_protocol="SSL",
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


def test_tansu_serves_tls_with_cert_and_key(cert: tuple[Path, Path], tmp_path: Path) -> None:
    """The embedded broker itself with --cert/--key (instore.embedded.tansu_argv)."""
    port = free_port()
    log = tmp_path / "tansu.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(tansu_argv("127.0.0.1", port, str(cert[0]), str(cert[1])),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not _wait_listening(port, proc):
            error = next((line for line in log.read_text().splitlines() if "error" in line.lower()),
                         log.read_text()[-300:])
            pytest.xfail(f"Tansu refuses TLS arguments: {error.strip()}")
        got = _round_trip(_ssl_settings(port, cert[0]))
        assert got == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    finally:
        stop_process(proc)


class TlsTerminator:
    """Accepts TLS on ``port`` with the given certificate and pipes bytes to a plain backend."""

    def __init__(self, cert: Path, key: Path, backend_port: int) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.backend_port = backend_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.handshakes_ok = 0
        self.handshakes_failed = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1
            conn.close()
            return
        self.handshakes_ok += 1
        backend = socket.create_connection(("127.0.0.1", self.backend_port))
        threading.Thread(target=self._pipe, args=(backend, tls), daemon=True).start()
        self._pipe(tls, backend)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


@pytest.fixture
def tls_broker(cert: tuple[Path, Path]) -> Iterator[TlsTerminator]:
    """Tansu (plain, on a private port) advertising the TLS terminator's address."""
    backend = free_port()
    terminator = TlsTerminator(cert[0], cert[1], backend)
    argv = tansu_argv("127.0.0.1", backend)
    argv[argv.index("--advertised-listener-url") + 1] = f"tcp://127.0.0.1:{terminator.port}"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert _wait_listening(backend, proc)
        yield terminator
    finally:
        terminator.close()
        stop_process(proc)


def test_kafka_clients_produce_and_consume_over_tls(tls_broker: TlsTerminator,
                                                    cert: tuple[Path, Path]) -> None:
    got = _round_trip(_ssl_settings(tls_broker.port, cert[0]))
    assert got == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert tls_broker.handshakes_ok >= 2  # producer, consumer (and admin) all spoke TLS


def test_a_client_that_does_not_trust_the_certificate_is_refused(
        tls_broker: TlsTerminator, tmp_path: Path) -> None:
    other_ca, _ = make_cert(tmp_path, "someone-else")
    with pytest.raises((KafkaUnavailable, KafkaException)):
        wait_for_broker(_ssl_settings(tls_broker.port, other_ca), timeout_s=3)
    assert tls_broker.handshakes_failed >= 1 and tls_broker.handshakes_ok == 0


def test_push_hub_serves_https(cert: tuple[Path, Path], tmp_path: Path,
                               kafka_bootstrap: str, redis_url: str) -> None:
    port = free_port()
    settings = make_settings(kafka_bootstrap, redis_url)
    env = child_env(settings, HUB_PORT=str(port), TLS_CERT_FILE=str(cert[0]),
                    TLS_KEY_FILE=str(cert[1]))
    log = tmp_path / "hub.log"
    proc = instore_proc(["push", "hub"], env, log)
    try:
        assert _wait_listening(port, proc), log.read_text()[-2000:]
        r = httpx.get(f"https://127.0.0.1:{port}/health", verify=str(cert[0]), timeout=10)
        assert r.status_code == 200 and r.json()["ok"] is True
        with pytest.raises(httpx.ConnectError):  # not trusted without the certificate
            httpx.get(f"https://127.0.0.1:{port}/health", timeout=10)
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on that port
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
    finally:
        stop_process(proc)
