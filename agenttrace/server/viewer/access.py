"""Who reads which runs: a project's API key (the backend) or anyone on this machine (local).

Signing in turns a key into a session cookie (HttpOnly, SameSite=Strict; Secure over HTTPS)
that names the project and an expiry, signed with a secret derived from that project's key: any
replica given the same keys accepts it, nothing is stored, and the key itself never reaches a
cookie, a URL or a page. Rotating a key ends its sessions.

Forms that change state (sign in, sign out) carry a token that must equal the one in the CSRF
cookie, and are refused when the browser says they come from another site.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from .sources import RunSource

SESSION_COOKIE = "agenttrace_session"
CSRF_COOKIE = "agenttrace_csrf"
SESSION_SECONDS = 12 * 3600
_SECRET_CONTEXT = b"agenttrace viewer session\0"


class Access(Protocol):
    """How a request gets the runs it may read."""

    #: whether readers sign in (and so whether the sign-in pages exist)
    signs_in: bool

    def source(self, request: Request) -> RunSource | None:
        """The runs this request may read; None: it must sign in first."""
        ...


class OpenAccess:
    """One source for every request: ``agenttrace view`` on 127.0.0.1."""

    signs_in = False

    def __init__(self, source: RunSource) -> None:
        self._source = source

    def source(self, request: Request) -> RunSource | None:
        return self._source


class KeyAccess:
    """A project's runs for whoever signed in with its API key (``agenttrace serve``)."""

    signs_in = True

    def __init__(self, projects: Mapping[str, str], source_for: Callable[[str], RunSource]) -> None:
        """``projects``: API key -> project id; ``source_for(project)``: that project's runs."""
        self._by_digest = {_digest(key): project for key, project in projects.items()}
        self._secrets = {project: _secret(key) for key, project in projects.items()}
        self._source_for = source_for

    def sign_in(self, api_key: str, now: float | None = None) -> str | None:
        """The session token for a valid key, None for any other string."""
        project = self._by_digest.get(_digest(api_key.strip()))
        if project is None:
            return None
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        return f"{project}.{expires}.{self._mac(project, expires)}"

    def project(self, token: str | None, now: float | None = None) -> str | None:
        """The project a session token stands for, if it is genuine and unexpired."""
        project, _, rest = (token or "").partition(".")
        expires_text, _, mac = rest.partition(".")
        if project not in self._secrets or not expires_text.isdigit():
            return None
        if int(expires_text) < (time.time() if now is None else now):
            return None
        if not hmac.compare_digest(mac, self._mac(project, int(expires_text))):
            return None
        return project

    def _mac(self, project: str, expires: int) -> str:
        message = f"{project}.{expires}".encode()
        return hmac.new(self._secrets[project], message, hashlib.sha256).hexdigest()

    def source(self, request: Request) -> RunSource | None:
        project = self.project(request.cookies.get(SESSION_COOKIE))
        return None if project is None else self._source_for(project)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _secret(key: str) -> bytes:
    return hashlib.sha256(_SECRET_CONTEXT + key.encode()).digest()


# -- cookies and forms ----------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )


def csrf_token(request: Request) -> str:
    """The request's CSRF token, made when it has none (``keep_csrf`` then sets its cookie)."""
    token = request.cookies.get(CSRF_COOKIE) or ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def keep_csrf(response: Response, request: Request) -> None:
    """Set the CSRF cookie that ``csrf_token`` made for this request, if it made one."""
    token = getattr(request.state, "new_csrf", None)
    if token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path="/",
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )


def form_refusal(request: Request, form: Mapping[str, str]) -> str | None:
    """Why a state-changing form must be refused (another site, a missing or wrong token)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
        return "this form was sent from another site"
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return "this form was sent from another site"
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    sent = form.get("csrf") or ""
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        return "the form expired; load the page again"
    return None
