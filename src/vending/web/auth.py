"""Operator sign-in, protection from cross-site requests, and security headers on every response.

Who may do what:
- requests from this machine (the kiosk) need no sign-in while `trust_localhost` is on;
- any other client signs in once with the operator token (a session cookie follows), or
  sends `Authorization: Bearer <token>`;
- boards (blueprint `boards`), GET /status and GET /health need no operator: boards cannot
  sign in and carry their own HMAC authentication.

State-changing requests from a browser must come from our own origin and carry the
`X-Vending-Request` header, which a cross-site form or an unpreflighted fetch cannot add;
a client with no browser headers at all (curl on the kiosk) is not a forgery vector.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
import platform
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
)
from itsdangerous import BadSignature, URLSafeTimedSerializer

from .. import audit
from ..errors import BadRequest
from ..events import AUTH_FAILED
from .common import is_loopback, runtime
from .errors import log_refusal
from .operations import audit_action, audit_refusal

logger = logging.getLogger("vending.auth")

bp = Blueprint("auth", __name__)

TOKEN_FILE = "admin_token"
COOKIE_NAME = "vending_session"
CSRF_HEADER = "X-Vending-Request"
SESSION_MAX_AGE = 30 * 24 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Blueprints and endpoints anyone may reach: boards authenticate themselves; status and
# health are for monitors; the sign-in page and the static files are needed to sign in.
EXEMPT_BLUEPRINTS = frozenset({"boards"})
# Logging out only deletes a cookie, so it needs neither a session nor the header.
PUBLIC_ENDPOINTS = frozenset({"api.status", "api.health", "auth.login", "auth.logout", "static"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: with it Chromium sends "Origin: null" on form posts, failing the check.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def load_or_create_token(data_dir: Path) -> tuple[str, bool]:
    """The operator token kept in `data_dir` (mode 0600), made on first start; (token, created)."""
    path = Path(data_dir) / TOKEN_FILE
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        token = ""
    if len(token) >= 16:
        if os.name == "posix" and path.stat().st_mode & 0o077:
            logger.warning("%s was readable by other users; made it private (0600)", path)
            os.chmod(path, 0o600)
        return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return token, True


class FailureLimiter:
    """At most `limit` failed sign-ins per client address in `window` seconds."""

    MAX_CLIENTS = 1024

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) < self.limit:
                return 0
            return max(1, int(failures[0] + self.window - now) + 1)

    def failed(self, client: str) -> None:
        """Count one failed attempt."""
        now = time.monotonic()
        with self._lock:
            if client not in self._failures and len(self._failures) >= self.MAX_CLIENTS:
                # Forget the client whose last failure is oldest, so memory stays bounded.
                oldest = min(self._failures, key=lambda c: self._failures[c][-1])
                del self._failures[oldest]
            self._failures.setdefault(client, deque()).append(now)


class OperatorAuth:
    """The operator token, the session cookie's signer and the sign-in rate limit."""

    def __init__(self, token: str, generated: bool, trust_localhost: bool) -> None:
        self.token = token
        self.generated = generated
        self.trust_localhost = trust_localhost
        self.limiter = FailureLimiter()
        self._signer = URLSafeTimedSerializer(token, salt="vending-operator-session")

    def check_token(self, candidate: str) -> bool:
        """Whether `candidate` is the operator token, in constant time."""
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self.token.encode())

    def new_session(self) -> str:
        """A signed cookie value; changing the token signs everyone out."""
        return self._signer.dumps({"operator": True})

    def session_valid(self, value: str) -> bool:
        """Whether a cookie value is one of ours and not too old."""
        try:
            data = self._signer.loads(value, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return False
        return isinstance(data, dict) and data.get("operator") is True

    def sign_in_url(self, base_url: str) -> str:
        """The URL that signs a browser in, as printed at start."""
        return f"{base_url.rstrip('/')}/login?{urlencode({'token': self.token})}"


def operator_auth() -> OperatorAuth:
    """The app's OperatorAuth."""
    return current_app.extensions["vending_auth"]


def host_is_local_name(host_header: str) -> bool:
    """Whether a Host header names this machine by loopback name or IP.

    A page from another site that rebinds its DNS name to 127.0.0.1 would otherwise
    reach the kiosk's trusted session through the kiosk's own browser.
    """
    node = platform.node().lower()
    if len(host_header) > MAX_CACHED_HOST:  # no name is this long: never cached
        return _names_this_machine.__wrapped__(host_header, node)
    return _names_this_machine(host_header, node)


# A DNS name is at most 253 characters; with a port and brackets, this is plenty.
MAX_CACHED_HOST = 270


@functools.lru_cache(maxsize=1024)
def _names_this_machine(host_header: str, node: str) -> bool:
    try:
        host = urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return False  # a malformed Host (http://[::1) names nothing of ours
    if host == "localhost" or host.endswith(".localhost"):
        return True
    # The machine's own name (http://raspberrypi.local:5000 on the kiosk) is not an
    # attacker's domain, so it may be trusted too.
    if node and host in (node, f"{node}.local"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _client() -> str:
    return request.remote_addr or "?"


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _bearer() -> str | None:
    return bearer_token(request.headers.get("Authorization", ""))


def _from_browser() -> bool:
    """Browsers add these on every state-changing request; curl and scripts do not."""
    return "Origin" in request.headers or "Sec-Fetch-Site" in request.headers


def _cross_site_reason() -> str | None:
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            netloc = urlsplit(origin).netloc
        except ValueError:
            raise BadRequest(f"the Origin header {origin[:80]!r} is not a URL") from None
        if netloc.lower() != request.host.lower():
            return f"a request from {origin} may not change anything here"
    site = request.headers.get("Sec-Fetch-Site")
    if site in ("cross-site", "same-site"):
        return f"a {site} request may not change anything here"
    return None


def _refuse(status: int, code: str, detail: str, **headers: str) -> Response:
    log_refusal(status, code, detail)
    response = jsonify({"error": code, "detail": detail})
    response.status_code = status
    response.headers.update(headers)
    return response


def _wants_page() -> bool:
    if request.method not in ("GET", "HEAD"):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def identify_client(auth: OperatorAuth, remote_addr: str | None, host: str,
                    cookie: str | None, authorization: str) -> str | None:
    """How a request is authorised: 'localhost', 'session', 'bearer', or None.

    Plain values in, so the polled endpoints' fast path (web/fastpath.py) decides exactly
    as every Flask view does."""
    if auth.trust_localhost and is_loopback(remote_addr) and host_is_local_name(host):
        return "localhost"
    if cookie and auth.session_valid(cookie):
        return "session"
    token = bearer_token(authorization)
    if token is not None and auth.check_token(token):
        return "bearer"
    return None


def identify() -> str | None:
    """How this request is authorised: 'localhost', 'session', 'bearer', or None."""
    return identify_client(operator_auth(), request.remote_addr, request.host,
                           request.cookies.get(COOKIE_NAME),
                           request.headers.get("Authorization", ""))


def identify_within_limits() -> str | None:
    """identify(), with a Bearer token held to the sign-in rate limit, for a public endpoint
    that shows an operator more (GET /status): a wrong token counts as a failed attempt and,
    while this address is locked out, even the right one identifies no one. Without this,
    whether the answer was the operator's view would tell a guesser at full speed whether
    the token was right."""
    who = identify()
    if who in ("localhost", "session") or _bearer() is None:
        return who
    auth = operator_auth()
    client = _client()
    if auth.limiter.retry_after(client):
        return None
    if who is None:
        auth.limiter.failed(client)
        _auth_failed(f"wrong Bearer token on {request.path}")
    return who


OPERATOR_NAMES = {"localhost": "local", "session": "operator", "bearer": "operator (token)"}


def _guard() -> Response | None:
    refusal = _check()
    if refusal is not None and request.method in UNSAFE_METHODS:
        # A refused attempt to change something is an operator action too: keep it.
        action = (request.endpoint or request.path).rsplit(".", 1)[-1]
        audit_refusal(action, f"{refusal.status_code} {request.method} {request.path}")
    return refusal


def _auth_failed(reason: str) -> None:
    client = _client()
    audit_refusal(audit.SIGN_IN, reason)
    runtime().events.publish(AUTH_FAILED, source=client)


def _check() -> Response | None:
    if request.blueprint in EXEMPT_BLUEPRINTS:
        return None
    unsafe = request.method in UNSAFE_METHODS
    if unsafe:
        reason = _cross_site_reason()
        if reason:
            return _refuse(403, "cross_site_request", reason)
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    auth = operator_auth()
    client = _client()
    who = identify()
    if who in (None, "bearer") and _bearer() is not None:
        # The right token waits too while this address is locked out, as on the sign-in page:
        # if it did not, 429 for a wrong guess and 200 for the right one would let guessing
        # go on at full speed.
        wait = auth.limiter.retry_after(client)
        if wait:
            return _refuse(429, "too_many_attempts",
                           f"too many wrong tokens; try again in {wait} s",
                           **{"Retry-After": str(wait)})
    if who is None:
        if _bearer() is not None:
            auth.limiter.failed(client)
            _auth_failed("wrong Bearer token")
            return _refuse(401, "bad_token", "the Bearer token is not the operator token",
                           **{"WWW-Authenticate": 'Bearer realm="vending"'})
        if _wants_page():
            return redirect(f"/login?{urlencode({'next': request.full_path.rstrip('?')})}")
        return _refuse(401, "sign_in_required",
                       "sign in at /login, or send Authorization: Bearer <operator token>"
                       " (printed at start, kept in the data directory's admin_token file)",
                       **{"WWW-Authenticate": 'Bearer realm="vending"'})
    g.operator = OPERATOR_NAMES[who]
    if unsafe and who != "bearer" and (who == "session" or _from_browser()) \
            and request.headers.get(CSRF_HEADER) != "1":
        return _refuse(403, "csrf_header_missing",
                       f"browser requests that change something must carry {CSRF_HEADER}: 1")
    return None


def _security_headers(response: Response) -> Response:
    # One pass over the headers instead of a setdefault (a scan, and a KeyError) per header:
    # this runs on every poll, and was a third of a /status answer's time.
    headers = response.headers
    present = {key.lower() for key, _ in headers.items()}
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            headers.add(name, value)
    if "cache-control" not in present \
            and response.mimetype in ("text/html", "application/json", "text/csv"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _safe_next(target: str | None) -> str:
    """`target` if it is a path on this server, else "/".

    Browsers drop tabs and newlines from a URL before following it, so "/\t/evil.example"
    becomes "//evil.example": any control character, space or backslash refuses the target,
    as do "//host" and "scheme:" forms.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if any(ch <= " " or ch == "\x7f" or ch == "\\" or not ch.isprintable() for ch in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _signed_in(target: str) -> Response:
    response = redirect(_safe_next(target))
    response.set_cookie(COOKIE_NAME, operator_auth().new_session(), max_age=SESSION_MAX_AGE,
                        httponly=True, samesite="Strict", secure=request.is_secure, path="/")
    logger.info("operator signed in from %s", _client())
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in page; GET /login?token=... (the URL printed at start) signs in at once."""
    auth = operator_auth()
    next_page = _safe_next(request.values.get("next"))
    token = request.form.get("token") if request.method == "POST" else request.args.get("token")
    error = None
    status = 200
    if token is not None:
        wait = auth.limiter.retry_after(_client())
        if wait:
            error, status = f"Too many wrong tokens. Try again in {wait} seconds.", 429
        elif auth.check_token(token.strip()):
            g.operator = "operator"
            audit_action(audit.SIGN_IN, audit.OK, "signed in")
            return _signed_in(next_page)
        else:
            auth.limiter.failed(_client())
            logger.warning("wrong operator token from %s", _client())
            _auth_failed("wrong token on the sign-in page")
            error, status = "That token is not right. Copy it from the server's start-up"\
                " message or its data directory's admin_token file.", 401
    response = Response(render_template(
        "login.html", error=error, next_page=next_page, page="login",
        trusted=identify() is not None,
    ), status=status, mimetype="text/html")
    if status == 429:
        response.headers["Retry-After"] = str(auth.limiter.retry_after(_client()))
    return response


@bp.post("/logout")
def logout():
    """Forget this browser's session."""
    response = redirect("/login")
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Strict")
    return response


def init_app(app: Flask) -> None:
    """Load or make the operator token, then guard every request and label every response."""
    config = app.extensions["vending"].config
    if config.admin_token:
        token, generated = config.admin_token, False
    else:
        token, generated = load_or_create_token(config.data_dir)
    app.extensions["vending_auth"] = OperatorAuth(token, generated, config.trust_localhost)
    app.register_blueprint(bp)
    app.before_request(_guard)
    app.after_request(_security_headers)

