"""Annotated dependencies: the shared services and who is calling.

Roles (marketer, analyst, ops, kiosk, cashier) authenticate with ``X-API-Key``; a shopper with
``Authorization: Bearer <shopper token>`` scoped to their own uid. No key: 401; a valid key of
another role, or a shopper token for someone else: 403. Keys are compared in constant time and
never logged.
"""

from __future__ import annotations

import hmac
from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api import revocations
from api.services import Services
from instore import shopper_tokens as tokens
from instore.settings import DEV_KEYS, Settings

ROLES: tuple[str, ...] = tuple(DEV_KEYS)

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="API key of a role: marketer, analyst, ops, kiosk or "
                              "cashier")
shopper_bearer = HTTPBearer(auto_error=False,
                            description="a shopper token from POST /shoppers/{uid}/consent")


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def role_of_key(settings: Settings, key: str | None) -> str | None:
    if not key:
        return None
    found = None
    for role in ROLES:
        expected = settings.api_key(role)
        if expected and hmac.compare_digest(expected.encode(), key.encode("utf-8", "replace")):
            found = role
    return found


def _unauthorized(detail: str) -> NoReturn:
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail,
                        headers={"WWW-Authenticate": "Bearer, ApiKey"})


def _forbidden(detail: str) -> NoReturn:
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


class RoleGuard:
    """Dependency: the caller's role, which must be one of ``roles``."""

    def __init__(self, *roles: str) -> None:
        self.roles = roles
        self.shopper = False

    def __call__(self, services: ServicesDep,
                 key: Annotated[str | None, Security(api_key_header)] = None) -> str:
        role = role_of_key(services.settings, key)
        if role is None:
            _unauthorized("missing or unknown X-API-Key")
        if role not in self.roles:
            _forbidden(f"this needs the role {' or '.join(self.roles)}")
        return role


class ShopperGuard:
    """Dependency: the shopper (uid) of the bearer token, or a caller with one of ``roles``.

    With a ``uid`` path parameter the token must be that shopper's. Returns the uid of the
    token, or ``"role:<role>"`` for a role caller. With ``optional=True`` an anonymous caller
    gets ``None`` (the route decides); without roles an API key then counts as anonymous.
    """

    def __init__(self, *roles: str, optional: bool = False) -> None:
        self.roles = roles
        self.shopper = True
        self.optional = optional

    def __call__(self, request: Request, services: ServicesDep,
                 bearer: Annotated[HTTPAuthorizationCredentials | None,
                                   Security(shopper_bearer)] = None,
                 key: Annotated[str | None, Security(api_key_header)] = None) -> str | None:
        path_uid = request.path_params.get("uid")
        if bearer is not None:
            secret = services.settings.shopper_secret
            try:
                claims = tokens.claims(secret, bearer.credentials)
            except tokens.TokenError as exc:
                _unauthorized(str(exc))
            uid = claims.uid
            if revocations.revoked(services.redis, secret, uid, claims.issued_ms):
                _unauthorized("revoked shopper token (opted out or erased): register again")
            if path_uid is not None and uid != path_uid:
                _forbidden("this shopper token is for another shopper")
            return uid
        if key and (self.roles or not self.optional):
            role = role_of_key(services.settings, key)
            if role is None:
                _unauthorized("unknown X-API-Key")
            if role not in self.roles:
                extra = f" or the role {' or '.join(self.roles)}" if self.roles else ""
                _forbidden(f"this needs the shopper's own token{extra}")
            return f"role:{role}"
        if self.optional:
            return None
        _unauthorized("missing shopper token (Authorization: Bearer ...)")


Marketer = Annotated[str, Depends(RoleGuard("marketer"))]
MarketerOrAnalyst = Annotated[str, Depends(RoleGuard("marketer", "analyst"))]
Analyst = Annotated[str, Depends(RoleGuard("analyst"))]
Ops = Annotated[str, Depends(RoleGuard("ops"))]
Kiosk = Annotated[str, Depends(RoleGuard("kiosk"))]
Cashier = Annotated[str, Depends(RoleGuard("cashier"))]
Shopper = Annotated[str, Depends(ShopperGuard())]
ShopperOrOps = Annotated[str, Depends(ShopperGuard("ops"))]
MaybeShopper = Annotated[str | None, Depends(ShopperGuard(optional=True))]
