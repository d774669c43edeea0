"""Pure security rules: the in-memory rate limiter and the log scanner."""

from __future__ import annotations

from pathlib import Path

from instore.logscan import scan, secrets_of
from instore.ratelimit import RateLimiter
from instore.settings import Settings


def test_limiter_allows_the_budget_per_key_then_says_when_to_retry() -> None:
    limiter = RateLimiter(6)
    assert not limiter.exhausted("ip")
    assert all(limiter.allow("ip") for _ in range(6))
    assert not limiter.allow("ip") and limiter.exhausted("ip")
    assert limiter.allow("other-ip")  # per key
    assert 50 <= limiter.retry_after_s("ip") <= 61  # the first hit leaves the window in 60 s
    assert limiter.allow("costly", cost=4) and not limiter.allow("costly", cost=3)
    assert limiter.allow("costly", cost=2)  # a refused hit counted nothing


def test_shared_limiter_lets_requests_through_without_redis() -> None:
    """Redis unreachable: the API keeps serving (fail open, logged), it does not 500."""
    import asyncio

    from instore.embedded import free_port
    from instore.ratelimit import SharedRateLimiter

    limiter = SharedRateLimiter(f"redis://127.0.0.1:{free_port()}/0", 1, "test")

    async def run() -> list[bool]:
        return [await limiter.allow("ip") for _ in range(3)] + [await limiter.exhausted("ip")]

    assert asyncio.run(run()) == [True, True, True, False]


def test_scanner_finds_secrets_and_positions_next_to_a_uid(tmp_path: Path) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    secrets = secrets_of(settings)
    assert "api key marketer" in secrets and "shopper token secret" in secrets
    log = tmp_path / "svc.log"
    log.write_text(
        "started worker (pid 12)\n"
        "offer sent to shopper-00001 in store-001\n"  # a uid alone: fine
        "batch near 51.50123,-0.12345 (4 rows)\n"  # a position alone: fine
        "shopper-00001 at 51.50123,-0.12345\n"  # both: a finding
        f"auth with {settings.api_key('ops')}\n"  # a secret: a finding
    )
    report = scan([log], secrets, ["shopper-00001"])
    kinds = [(f.line_no, f.kind, f.what) for f in report.findings]
    assert kinds == [(4, "uid+position", "shopper-00001"), (5, "secret", "api key ops")]
    assert report.lines == 5 and not report.ok
