"""ksql-python-ng's HTTP calls made the way httpx 0.28 accepts them.

ksql-python-ng 0.29.0.1 passes ``cert=`` to httpx calls that httpx 0.28 no longer accepts;
``CompatAPI`` sends the same requests with the same bodies without it, and turns a connection
that fails into :class:`~instore.commands.ksql.client.KsqlUnavailable`. It imports httpx and
ksql-python-ng at once: ``make_client`` imports this module only when it builds a client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from ksql.api import SimplifiedAPI

from instore.commands.ksql.client import unavailable


class CompatAPI(SimplifiedAPI):  # type: ignore[misc]
    """ksql-python-ng's API without the ``cert=`` argument httpx 0.28 rejects."""

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except httpx.TransportError as exc:
            raise unavailable(self.url, exc) from None

    def _auth(self) -> Any:
        return (self.api_key, self.secret) if self.api_key and self.secret else None

    def _body(self, sql_string: str, stream_properties: Any, encoding: str) -> bytes:
        sql_string = self._validate_sql_string(sql_string)
        body = {"ksql": sql_string, "streamsProperties": stream_properties or {}}
        return json.dumps(body).encode(encoding)

    def get_request(self, endpoint: str) -> Any:
        with self._reaching():
            return httpx.get(
                endpoint, headers=self.headers, auth=self._auth(), timeout=self.timeout
            )

    def _http1_request(
        self,
        endpoint: str,
        method: str = "POST",
        sql_string: str = "",
        stream_properties: Any = None,
        encoding: str = "utf-8",
    ) -> Any:
        content = self._body(sql_string, stream_properties, encoding)
        with self._reaching():
            return httpx.request(
                method.upper(),
                f"{self.url}/{endpoint}",
                content=content,
                headers=self.headers,
                auth=self._auth(),
                timeout=self.timeout,
            )

    @contextmanager
    def _http1_stream(
        self,
        endpoint: str,
        method: str = "POST",
        sql_string: str = "",
        stream_properties: Any = None,
        encoding: str = "utf-8",
    ) -> Any:
        content = self._body(sql_string, stream_properties, encoding)
        with self._reaching(), httpx.stream(
            method.upper(),
            f"{self.url}/{endpoint}",
            content=content,
            headers=self.headers,
            auth=self._auth(),
            timeout=httpx.Timeout(self.timeout, read=None),
        ) as response:
            yield response

    def close_query(self, query_id: str) -> bool:
        with self._reaching():
            r = httpx.post(
                f"{self.url}/close-query",
                json={"queryId": query_id},
                auth=self._auth(),
                timeout=self.timeout,
            )
        return r.status_code == 200
