"""``AsyncAnalytics``: the thin I/O shell around ``_protocol``."""

from __future__ import annotations

import base64
import functools
import logging
import os
import time
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
import httpx

from . import _protocol as p
from ._capacity import capacity as _capacity_of
from ._convert import ID_LIMIT, THREAD_FROM
from ._errors import (
    Attempt,
    DecodeError,
    MemcachierError,
    OutcomeUnknownError,
    ResponseTooLargeError,
    TransportError,
    UnknownCredentialError,
    scrub_error,
)
from ._models import Capabilities, Capacity, Credential, HistoryRecord, NewCredential, Stats
from ._stack import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    Stack,
    StackKeywords,
    build_stack,
    check_headers,
    common_headers,
    is_loopback,
    stack_options,
)
from ._transports import hooks as _hooks
from ._transports.body import (
    DEFAULT_MAX_RESPONSE_SIZE,
    network_abort,
    read_body,
    read_body_in_memory,
)
from ._transports.core import outcome_unknown
from ._transports.retry import (
    BODY_EXTENSION,
    POLICY_EXTENSION,
    RetryPolicy,
    RetryTransport,
    attempts_of,
    outcome_of,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_TIMEOUT",
    "AsyncAnalytics",
    "check_base_url",
    "client_on_stack",
]

T = TypeVar("T")

logger = logging.getLogger("memcachier_async")

DEFAULT_BASE_URL = "https://analytics.memcachier.com/api/v1"


@functools.lru_cache(maxsize=64)  # a fan-out builds thousands of clients on one base URL
def check_base_url(base_url: str) -> str:
    # Cached: a fan-out makes a client per cache, all with the same base URL,
    # and httpx's parse of it was a tenth of a 1,000-cache fan-out's CPU.
    # No message here quotes base_url whole: it may hold a password.
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        raise ValueError("base_url is not a valid URL") from None
    if url.userinfo:
        # Not echoed: the URL holds a password. With credentials in the URL,
        # httpx would send those instead of the client's own.
        raise ValueError(
            "base_url must not hold credentials (user:password@): pass them as "
            "username and password"
        )
    if url.scheme == "https":
        pass
    elif url.scheme == "http":
        if not is_loopback(url.host):
            raise ValueError(
                f"refusing plain http:// to {url.host!r}: Basic auth would cross the "
                "network in clear text. Use https://, or http:// to a loopback address "
                "(127.0.0.1, ::1, localhost) for a local emulator."
            )
    else:
        raise ValueError(f"base_url must be an https:// URL, not {url.scheme[:20]!r}://")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ValueError(f"base_url's port must be from 1 to 65535, not {url.port}")
    if url.query or url.fragment:
        raise ValueError("base_url must not have a query or fragment")
    return str(url).rstrip("/")


def _transport_error(
    spec: p.RequestSpec, idempotent: bool, exc: httpx.TransportError, elapsed: float
) -> TransportError:
    attempts = attempts_of(exc) or (Attempt(1, type(exc).__name__, elapsed),)
    message = f"{spec.method} {spec.url} failed: {exc.__class__.__name__}: {exc}"
    if len(attempts) > 1:
        message += f" (after {len(attempts)} attempts)"
    error: TransportError
    if outcome_unknown(outcome_of(exc), idempotent=idempotent):
        error = OutcomeUnknownError(
            f"{message}. The request may have reached the service and been carried "
            "out, so it was not sent again: call list_credentials() to see whether "
            "the credential was created before trying again."
        )
    else:
        error = TransportError(message)
    error.attempts = attempts
    return error


def _check_identity(username: str, password: str, cache_id: int | None) -> None:
    if not isinstance(username, str) or not isinstance(password, str):
        raise TypeError("username and password must be str")
    if not username:
        raise ValueError("username must not be empty")
    if ":" in username:
        # RFC 7617: the server splits user-pass at the first colon.
        raise ValueError("username must not contain ':' (Basic auth splits there)")
    if cache_id is not None and (type(cache_id) is not int or not 0 <= cache_id < ID_LIMIT):
        # The range the login answer is held to (ids are database keys).
        raise ValueError("cache_id must be a non-negative int below 2**63")


def _auth_headers(
    username: str, password: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every request's headers: :func:`common_headers` and the credentials."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}", **common_headers(extra)}


def _secrets(authorization: str) -> tuple[str, ...]:
    """What of the credentials an error page could echo: the header value,
    the base64 token, ``username:password`` and the password itself."""
    token = authorization.removeprefix("Basic ")
    user_pass = base64.b64decode(token).decode()
    password = user_pass.partition(":")[2]
    # A very short password would match ordinary words of the page.
    found = [authorization, token, user_pass]
    if len(password) >= 4:
        found.append(password)
    return tuple(found)


class _Session:
    """What a client and its :meth:`~AsyncAnalytics.with_options` views share: the login."""

    __slots__ = ("_lock", "cache_id")

    def __init__(self, cache_id: int | None) -> None:
        self.cache_id = cache_id
        self._lock: anyio.Lock | None = None

    @property
    def lock(self) -> anyio.Lock:
        """Held while logging in; made when first needed (a client given its cache id never is)."""
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_MAX_SPECS = 64


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not timeout > 0 or timeout == float("inf"):
        raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")
    return float(timeout)


def _credential_name(credential: str | Credential) -> str:
    if isinstance(credential, Credential):
        return credential.sasl_username
    if isinstance(credential, str):
        return credential
    raise TypeError(f"expected a username or a Credential, not {type(credential).__name__}")


class AsyncAnalytics:
    """An async client of the MemCachier Analytics API.

    ::

        async with AsyncAnalytics(username, password) as api:
            stats = await api.stats()

    The cache id is read with one ``login`` call, the first time it is
    needed, unless ``cache_id`` is given. The other keywords are the
    :class:`StackKeywords` that :func:`fan_out` and :func:`watch` take too.

    Every request goes through ``send()`` of one ``httpx.AsyncClient``,
    :attr:`http_client`: by default the client's own,
    ``httpx.AsyncClient(transport=RetryTransport(engine))`` with a pool of
    :data:`DEFAULT_LIMITS` and the timeouts of ``http_timeout``
    (:data:`DEFAULT_TIMEOUT`), closed by :meth:`aclose`. Its engine is
    ``httpx.AsyncHTTPTransport`` (``http_backend="httpx"``), aiohttp
    (``http_backend="aiohttp"``: asyncio only, the ``aiohttp`` extra, much
    less CPU per call), or the given ``transport`` (a mock, the
    emulator's). Pass ``http_client`` to use your own ``httpx.AsyncClient``
    instead (it is never closed here). ``limits`` sizes the own engine's
    pool; ``verify`` (``True``, a CA bundle path, ``False`` or an
    ``ssl.SSLContext``), ``cert`` (a client certificate) and ``proxy`` set
    its TLS and proxy. Only an ``https://`` base URL beyond loopback goes
    through a proxy (``proxy``, else HTTPS_PROXY/ALL_PROXY), in a CONNECT
    tunnel; loopback and ``http://`` are always reached directly.
    ``headers`` are sent with every request (they may replace
    ``User-Agent`` and ``Accept``, never the credentials). The own client
    keeps no cookie a server sets.

    ``max_response_size`` bounds a success body in bytes, counted as they
    arrive, compressed on the wire and decompressed (default
    :data:`DEFAULT_MAX_RESPONSE_SIZE`, 64 MiB; ``None``: no bound). A body
    past it raises :class:`ResponseTooLargeError` as soon as it gets there.
    Of an error body only the first few KiB are read.

    Failed calls are retried by a :class:`RetryTransport` with ``retry``
    (default: a ``RetryPolicy()`` of this client's own), wrapped around the
    client's transport or the given ``transport``. A given ``http_client``
    is used as it is: wrap its transport yourself to retry.
    ``RetryPolicy.disabled()`` turns retrying off.
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        cache_id: int | None = None,
        base_url: str = DEFAULT_BASE_URL,
        **options: Unpack[StackKeywords],
    ) -> None:
        _check_identity(username, password, cache_id)
        base_url = check_base_url(base_url)
        stack = build_stack(stack_options("AsyncAnalytics", options), base_url=base_url)
        self._setup(username, password, cache_id, base_url, stack, owns_client=stack.owned)

    def _setup(
        self,
        username: str,
        password: str,
        cache_id: int | None,
        base_url: str,
        stack: Stack,
        *,
        owns_client: bool,
    ) -> None:
        """Every client on ``stack`` sends its options' ``headers`` and reads
        within their ``max_response_size``."""
        self._max_response_size = stack.options.max_response_size
        self._username = username
        self._base_url = base_url
        # Built once: the only place the password lives after __init__.
        self._headers = _auth_headers(username, password, stack.options.headers)
        # What each request adds to the client's own headers: only the
        # credentials when the SDK made the client (it carries the rest).
        self._sent_headers: Mapping[str, str] = (
            {"Authorization": self._headers["Authorization"]}
            if stack.has_headers
            else self._headers
        )
        self._http = stack.client
        self._owns_client = owns_client
        self._retry_transport: RetryTransport | None = stack.retry
        self._session = _Session(cache_id)
        # Per-view options (with_options): a policy sent with each request,
        # the whole call's deadline, extra headers.
        self._policy: RetryPolicy | None = None
        self._deadline: float | None = None
        self._extra_headers: Mapping[str, str] = _NO_HEADERS
        # The requests of calls without a body, shared with the views (which
        # keep base_url and max_response_size).
        self._specs: dict[tuple[str, int | None, str | None], tuple[p.RequestSpec, httpx.URL]] = {}

    @classmethod
    def from_env(
        cls,
        *,
        username: str | None = None,
        password: str | None = None,
        cache_id: int | None = None,
        base_url: str | None = None,
        **options: Unpack[StackKeywords],
    ) -> AsyncAnalytics:
        """A client from ``MEMCACHIER_USERNAME`` and ``MEMCACHIER_PASSWORD``.

        ``MEMCACHIER_BASE_URL``, when set, is the base URL (an emulator's,
        say). Arguments given win over the environment
        (``from_env(cache_id=42, base_url=...)``); the stack keywords are the
        constructor's.
        """
        found = {}
        for name, value, var in (
            ("username", username, "MEMCACHIER_USERNAME"),
            ("password", password, "MEMCACHIER_PASSWORD"),
        ):
            if value is None:
                value = os.environ.get(var)
                if not value:
                    raise ValueError(f"environment variable {var} is not set")
            found[name] = value
        if base_url is None:
            base_url = os.environ.get("MEMCACHIER_BASE_URL") or DEFAULT_BASE_URL
        return cls(
            found["username"], found["password"], cache_id=cache_id, base_url=base_url, **options
        )

    def __repr__(self) -> str:
        return (
            f"<AsyncAnalytics username={self._username!r} cache_id={self.cache_id!r} "
            f"base_url={self._base_url!r}>"
        )

    def with_options(
        self,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncAnalytics:
        """A view of this client with other per-call options.

        ::

            fast = api.with_options(timeout=2.0)
            stats = await fast.stats()

        The view shares this client's connection pool, login (cache id) and
        retry budget, costs no I/O to make, and can be used at the same time
        as the client; closing it closes nothing. ``timeout`` bounds each
        whole call (every attempt and wait); ``retry`` replaces the retry
        policy (its ``budget`` is replaced by this client's); ``headers`` are
        added to every request (not ``Authorization``). Options not given
        are this client's.
        """
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._owns_client = False
        if headers:
            view._extra_headers = MappingProxyType(
                {**self._extra_headers, **check_headers(headers)}
            )
        if timeout is not None:
            view._deadline = _check_timeout(timeout)
        if retry is not None or timeout is not None:
            view._policy = self._view_policy(retry, view._deadline)
        return view

    def _view_policy(self, retry: RetryPolicy | None, deadline: float | None) -> RetryPolicy | None:
        base = self._retry_transport.policy if self._retry_transport is not None else None
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        if base is None:
            if retry is not None and retry.max_attempts > 1:
                raise ValueError(
                    "retry= applies to the client's own transport; with http_client, wrap "
                    "its transport in RetryTransport(transport, policy) instead"
                )
            return None  # the deadline is kept by _bounded itself
        policy = self._policy or base
        if retry is not None:
            policy = attrs.evolve(retry, budget=base.budget)
        if deadline is not None:
            policy = attrs.evolve(policy, deadline=deadline)
        return policy

    @property
    def username(self) -> str:
        return self._username

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def cache_id(self) -> int | None:
        """The cache id, once known (given, or read by :meth:`login`)."""
        return self._session.cache_id

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The ``httpx.AsyncClient`` every request of this client goes through.

        Its ``send()`` sends each one, so event hooks, auth and headers set on
        it, respx, ``HTTPXClientInstrumentor().instrument_client()`` and a
        patch of ``send`` see every request the SDK makes.
        """
        return self._http

    async def __aenter__(self) -> AsyncAnalytics:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client, if this object created it."""
        if self._owns_client:
            await self._http.aclose()

    # --- sending ------------------------------------------------------------

    async def _send(
        self,
        endpoint: p.Endpoint[T],
        *,
        username: str | None = None,
        body: Any = None,
    ) -> T:
        if _hooks.request_hooks:
            return await self._observed(endpoint, username, body)
        if self._deadline is not None and self._policy is None:
            return await self._bounded(endpoint, username, body, None)
        return await self._call(endpoint, username, body, None)  # one coroutine fewer

    async def _observed(self, endpoint: p.Endpoint[T], username: str | None, body: Any) -> T:
        """:meth:`_bounded`, then an ``on_request`` event for the hooks."""
        seen: list[int] = []
        outcome = "ok"
        status: int | None = None
        attempts = 0
        started = time.perf_counter()
        try:
            result = await self._bounded(endpoint, username, body, seen)
            status, attempts = seen
            return result
        except MemcachierError as error:
            outcome = type(error).__name__
            status = getattr(error, "status_code", None)
            attempts = len(error.attempts)
            raise
        finally:
            _hooks.emit_request(
                _hooks.RequestEvent(
                    endpoint=endpoint.name,
                    method=endpoint.method,
                    path=endpoint.path,
                    outcome=outcome,
                    status_code=status,
                    duration=time.perf_counter() - started,
                    attempts=attempts,
                )
            )

    async def _bounded(
        self, endpoint: p.Endpoint[T], username: str | None, body: Any, seen: list[int] | None
    ) -> T:
        if self._deadline is not None and self._policy is None:
            # No retry layer of ours to keep the deadline (a given http_client).
            with anyio.move_on_after(self._deadline):
                return await self._call(endpoint, username, body, seen)
            raise TransportError(
                f"{endpoint.name}: the call's deadline of {self._deadline} s passed"
            )
        return await self._call(endpoint, username, body, seen)

    async def _call(
        self, endpoint: p.Endpoint[T], username: str | None, body: Any, seen: list[int] | None
    ) -> T:
        cache_id = None
        if endpoint.needs_cache_id:
            cache_id = self._session.cache_id
            if cache_id is None:
                cache_id = await self.login()
        spec, url = self._spec(endpoint, cache_id, username, body)
        extensions = spec.extensions
        if self._policy is not None:
            extensions = {**extensions, POLICY_EXTENSION: self._policy}
        headers = spec.headers
        if self._extra_headers:
            headers = {**self._extra_headers, **headers}
        started = time.perf_counter()
        try:
            request = self._http.build_request(
                spec.method,
                url,
                content=spec.content,
                headers={**self._sent_headers, **headers} if headers else self._sent_headers,
                extensions=dict(extensions),
            )
            response, content = await self._read(request)
        except httpx.TransportError as exc:
            elapsed = time.perf_counter() - started
            failed = _transport_error(spec, endpoint.idempotent, exc, elapsed)
            raise self._scrubbed(failed, exc)  # noqa: B904 - chained in _scrubbed
        except httpx.DecodingError as exc:
            error = DecodeError(
                f"{spec.method} {spec.url}: the body could not be decoded: {exc}",
                endpoint=endpoint.name,
            )
            error.attempts = attempts_of(exc) or (
                Attempt(1, type(exc).__name__, time.perf_counter() - started),
            )
            raise self._scrubbed(error, exc)  # noqa: B904 - chained in _scrubbed
        except ResponseTooLargeError as exc:
            if not exc.attempts:
                exc.attempts = (Attempt(1, type(exc).__name__, time.perf_counter() - started),)
            raise
        logger.debug(
            "%s %s -> %d in %.1f ms",
            spec.method,
            spec.url,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        attempts = attempts_of(response) or (
            Attempt(1, response.status_code, time.perf_counter() - started),
        )
        if seen is not None:
            seen += (response.status_code, len(attempts))
        if 200 <= response.status_code < 300 and len(content) < THREAD_FROM:
            # What parse_response does with a success, without its keywords.
            try:
                return endpoint.decode(content, endpoint.name)
            except MemcachierError as error:
                error.attempts = attempts
                # A decode error's path quotes the body's keys: a server may echo the credentials.
                scrub_error(error, _secrets(self._headers["Authorization"]))
                raise
        parse = functools.partial(
            p.parse_response,
            endpoint,
            status_code=response.status_code,
            reason=response.reason_phrase,
            headers=response.headers,
            body=content,
            method=spec.method,
            url=spec.url,
            secrets=(
                ()
                if 200 <= response.status_code < 300
                else _secrets(self._headers["Authorization"])
            ),
        )
        try:
            if len(content) < THREAD_FROM:
                return parse()
            # Decoding a big body takes long enough to stall every other task
            # (a 58 MB history: 2 s): a worker thread does it instead.
            return await anyio.to_thread.run_sync(parse)
        except MemcachierError as error:
            error.attempts = attempts
            scrub_error(error, _secrets(self._headers["Authorization"]))
            raise

    def _scrubbed(self, error: MemcachierError, cause: BaseException) -> MemcachierError:
        """``error`` with the credentials cut from its message, chained to
        ``cause`` unless the text of ``cause`` or of what it chains holds them
        (an engine's parse error may quote a raw header line the server echoed):
        then the traceback stops at ``error``."""
        secrets = _secrets(self._headers["Authorization"])
        scrub_error(error, secrets)
        seen: BaseException | None = cause
        for _ in range(16):
            if seen is None:
                error.__cause__ = cause
                return error
            if any(secret in f"{seen!s} {seen!r}" for secret in secrets):
                break
            seen = seen.__cause__ or seen.__context__
        error.__cause__ = None
        error.__suppress_context__ = True
        return error

    def _spec(
        self, endpoint: p.Endpoint[T], cache_id: int | None, username: str | None, body: Any
    ) -> tuple[p.RequestSpec, httpx.URL]:
        """The request of a call and its URL parsed; a call without a body is
        built (and its URL parsed) once per client and views."""
        if body is not None or endpoint.raw_path:
            spec = self._build(endpoint, cache_id, username, body)
            return spec, httpx.URL(spec.url)
        key = (endpoint.name, cache_id, username)
        found = self._specs.get(key)
        if found is None:
            if len(self._specs) >= _MAX_SPECS:  # one per username deleted, promoted…
                self._specs.clear()
            spec = self._build(endpoint, cache_id, username, None)
            found = self._specs[key] = (spec, httpx.URL(spec.url))
        return found

    def _build(
        self, endpoint: p.Endpoint[T], cache_id: int | None, username: str | None, body: Any
    ) -> p.RequestSpec:
        return p.build_request(
            endpoint,
            self._base_url,
            cache_id=cache_id,
            username=username,
            body=body,
            max_response_size=self._max_response_size,
        )

    async def _read(self, request: httpx.Request) -> tuple[httpx.Response, bytes]:
        """Send through ``self._http`` and read the body within the size limit.

        A client that is not the SDK's own may have a transport that hands
        back a body still streaming and still compressed.
        """
        response = await self._http.send(request, stream=True)
        body = response.extensions.get(BODY_EXTENSION)
        if isinstance(body, bytes):
            # Through a RetryTransport: the body is in memory, read within
            # this request's size limit and decoded already.
            await response.aclose()
            return response, body
        if response.is_stream_consumed:
            # Made from bytes in memory (a mock's), so httpx read and decoded
            # it already: only its size is left to check.
            content, _ = await read_body_in_memory(
                response.content,
                status_code=response.status_code,
                content_encoding=None,
                request=request,
            )
            return response, content
        try:
            content, _ = await read_body(
                response.aiter_raw(),
                status_code=response.status_code,
                content_encoding=response.headers.get("content-encoding"),
                content_length=response.headers.get("content-length"),
                request=request,
                abort=network_abort(response.extensions),
            )
        finally:
            await response.aclose()
        return response, content

    # --- the API ------------------------------------------------------------

    async def login(self) -> int:
        """The cache id of this credential (``GET /login``), read once and cached.

        Concurrent first calls share one request.
        """
        session = self._session
        if session.cache_id is not None:
            return session.cache_id
        async with session.lock:
            if session.cache_id is None:
                session.cache_id = await self._send(p.LOGIN)
        return session.cache_id

    async def request(self, method: str, path: str, *, json: Any = None) -> Any:
        """An authenticated call to any path under the base URL; its JSON back.

        ::

            usage = await api.request("GET", "/{cache_id}/stats")

        For endpoints the SDK does not model yet: the call goes through the
        same login, retries (by method: GET, PUT and DELETE are retried after
        a failure that may have reached the server; POST and PATCH are not),
        deadline, size limits and error classes as the others. ``{cache_id}``
        in ``path`` is filled in (logging in first if needed); ``json`` is
        sent as the JSON body. Returns the decoded body (``None`` when empty).
        """
        endpoint = p.custom_endpoint(method, path)
        return await self._send(endpoint, body=json)

    async def stats(self) -> Stats:
        """The stats of every server of the cache, keyed by ``"host:port"``."""
        return await self._send(p.STATS)

    async def history(self) -> list[HistoryRecord]:
        """The cache's stats history, oldest first; servers interleave."""
        return await self._send(p.HISTORY)

    async def capacity(self) -> Capacity:
        """Capacity advice from the cache's history: one :meth:`history` call, then
        :func:`capacity` (which server fills up next, when, and what size would have
        held what it evicted)."""
        return _capacity_of(await self.history())

    async def flush(self) -> None:
        """Remove every item from the cache (needs the flush capability).

        A :class:`ServerError` with ``servers`` means those servers did not
        answer; the others may have been flushed.
        """
        await self._send(p.FLUSH)

    async def list_credentials(self) -> list[Credential]:
        """Every credential of the cache."""
        return await self._send(p.LIST_CREDENTIALS)

    async def create_credential(self) -> NewCredential:
        """Create a credential; the result holds its password, shown only this once.

        This call is never retried after it may have reached the server.
        """
        return await self._send(p.CREATE_CREDENTIAL)

    async def update_credential(
        self,
        credential: str | Credential,
        *,
        write_capability: bool | None = None,
        flush_capability: bool | None = None,
        api_capability: bool | None = None,
    ) -> Capabilities:
        """Set a credential's capabilities; returns them as the API now has them.

        The request always carries all three capabilities, because the API
        sets an omitted one to false. A capability left as ``None`` keeps its
        current value, read with one :meth:`list_credentials` call first
        (no extra call when all three are given). Raises
        :class:`UnknownCredentialError` when that list has no such username.
        """
        username = _credential_name(credential)
        p.path_segment(username)  # refuse a bad name before any request
        wanted = {
            "flush_capability": flush_capability,
            "write_capability": write_capability,
            "api_capability": api_capability,
        }
        for name, value in wanted.items():
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool or None, not {type(value).__name__}")
        if any(value is None for value in wanted.values()):
            current = await self._find_credential(username)
            for name, value in wanted.items():
                if value is None:
                    wanted[name] = getattr(current, name)
        return await self._send(p.UPDATE_CREDENTIAL, username=username, body=wanted)

    async def _find_credential(self, username: str) -> Credential:
        for found in await self.list_credentials():
            if found.sasl_username == username:
                return found
        raise UnknownCredentialError(username)

    async def promote_credential(self, credential: str | Credential) -> Credential:
        """Make a credential the cache's primary one."""
        return await self._send(p.PROMOTE_CREDENTIAL, username=_credential_name(credential))

    async def delete_credential(self, credential: str | Credential) -> None:
        """Delete a credential."""
        await self._send(p.DELETE_CREDENTIAL, username=_credential_name(credential))


def client_on_stack(
    stack: Stack, username: str, password: str, *, cache_id: int | None, base_url: str
) -> AsyncAnalytics:
    """A client of one credential set on a stack others share (``fan_out``, ``watch``).

    Checked as the constructor checks; it sends the stack's ``headers`` and
    reads within its ``max_response_size``; it never closes the stack (its
    builder does).
    """
    _check_identity(username, password, cache_id)
    base_url = check_base_url(base_url)
    api = AsyncAnalytics.__new__(AsyncAnalytics)
    api._setup(username, password, cache_id, base_url, stack, owns_client=False)
    return api
