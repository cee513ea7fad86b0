"""Seeded, deterministic fault injection for the emulator.

A :class:`FaultPlan` gives each endpoint a :class:`Faults` (a rate per kind
of failure). Every request draws from its endpoint's own random stream,
seeded from the plan's seed and the endpoint's name, so the n-th call of an
endpoint always meets the same fault, however calls of other endpoints
interleave with it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable, Mapping

import attrs

from memcachier_async._protocol import ENDPOINTS

__all__ = ["FAULT_KINDS", "Fault", "FaultPlan", "Faults"]

#: Every kind of fault, in the order a draw walks them.
FAULT_KINDS: tuple[str, ...] = (
    "server_error",
    "partial",
    "rate_limit",
    "bad_gateway",
    "unavailable",
    "gateway_timeout",
    "reset",
    "act_then_drop",
    "malformed",
)

# Only these endpoints name servers in a "Server error: host:port" body.
_PARTIAL_ENDPOINTS = frozenset({"stats", "flush"})
# These answer an empty body: there is nothing to malform.
_EMPTY_ENDPOINTS = frozenset({"flush", "delete_credential"})
# The transient kinds a retry layer is expected to absorb.
_TRANSIENT = ("server_error", "bad_gateway", "unavailable", "rate_limit", "reset")


def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


@attrs.frozen
class Faults:
    """The chance of each fault on one endpoint's calls.

    The kinds exclude each other (their rates must sum to at most 1):

    - ``server_error``: ``500 Server error``;
    - ``partial``: ``500 Server error: host:port`` naming one server (stats
      and flush only; a flush still flushes the other servers);
    - ``rate_limit``: ``429`` with ``Retry-After`` (the plan's ``retry_after``);
    - ``bad_gateway``, ``unavailable``, ``gateway_timeout``: 502, 503, 504 with
      an HTML page, as a proxy sends them;
    - ``reset``: the connection is reset before the call is carried out;
    - ``act_then_drop``: the call is carried out (a credential created, a
      cache flushed), then the connection is dropped before the answer;
    - ``malformed``: a ``200`` whose body is not what the endpoint returns.

    ``latency`` is the independent chance of waiting ``delay`` seconds
    before answering.
    """

    server_error: float = attrs.field(default=0.0, validator=_rate)
    partial: float = attrs.field(default=0.0, validator=_rate)
    rate_limit: float = attrs.field(default=0.0, validator=_rate)
    bad_gateway: float = attrs.field(default=0.0, validator=_rate)
    unavailable: float = attrs.field(default=0.0, validator=_rate)
    gateway_timeout: float = attrs.field(default=0.0, validator=_rate)
    reset: float = attrs.field(default=0.0, validator=_rate)
    act_then_drop: float = attrs.field(default=0.0, validator=_rate)
    malformed: float = attrs.field(default=0.0, validator=_rate)
    latency: float = attrs.field(default=0.0, validator=_rate)
    delay: float = 0.05

    def __attrs_post_init__(self) -> None:
        total = sum(getattr(self, kind) for kind in FAULT_KINDS)
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:.3f}, more than 1")
        if self.delay < 0:
            raise ValueError("delay must not be negative")

    @classmethod
    def transient(cls, rate: float, *, over_tcp: bool = True) -> Faults:
        """``rate`` spread evenly over 500, 502, 503, 429 and (over TCP) resets."""
        kinds = _TRANSIENT if over_tcp else _TRANSIENT[:-1]
        return cls(**dict.fromkeys(kinds, rate / len(kinds)))

    def rates(self) -> dict[str, float]:
        """The non-zero rates, by kind."""
        return {kind: getattr(self, kind) for kind in FAULT_KINDS if getattr(self, kind)}


@attrs.frozen
class Fault:
    """What happens to one request: a kind (``None`` for none) and a delay.

    ``pick`` is a uniform draw in [0, 1) that chooses the details (which
    server a partial failure names, which malformed body).
    """

    kind: str | None = None
    delay: float = 0.0
    pick: float = 0.0


NO_FAULT = Fault()


class FaultPlan:
    """Which requests fail, and how: per-endpoint :class:`Faults`, seeded.

    ::

        plan = FaultPlan(seed=7, stats=Faults.transient(0.3),
                         create_credential=Faults(act_then_drop=0.2))
        plan.script("flush", "partial")   # the next flush fails partially

    ``default`` applies to endpoints not named; where a default ``partial``
    cannot apply it is a plain ``500 Server error``, and a default
    ``malformed`` on an endpoint with an empty answer sends a stray body
    (which a client ignores). Scripted faults are used,
    in order, before any random draw. ``injected`` counts the faults
    served, by ``(endpoint, kind)``.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        default: Faults | None = None,
        retry_after: float = 1.0,
        **endpoints: Faults,
    ) -> None:
        if retry_after < 0:
            raise ValueError("retry_after must not be negative")
        self.seed = seed
        self.retry_after = retry_after
        self._default = default or Faults()
        for name, faults in endpoints.items():
            _check_endpoint(name)
            if not isinstance(faults, Faults):
                raise TypeError(f"{name}: expected Faults, got {type(faults).__name__}")
            _check_kinds(name, faults.rates())
        self._endpoints: Mapping[str, Faults] = dict(endpoints)
        self._rngs: dict[str, random.Random] = {}
        self._scripts: dict[str, list[str | None]] = {}
        self._lock = threading.Lock()
        self.injected: Counter[tuple[str, str]] = Counter()

    def __repr__(self) -> str:
        named = {name: faults.rates() for name, faults in self._endpoints.items()}
        return f"FaultPlan(seed={self.seed}, default={self._default.rates()}, endpoints={named})"

    def _for(self, endpoint: str) -> Faults:
        return self._endpoints.get(endpoint, self._default)

    def script(self, endpoint: str, *kinds: str | None) -> FaultPlan:
        """Queue faults for the next calls of ``endpoint`` (``None``: no fault)."""
        _check_endpoint(endpoint)
        _check_kinds(endpoint, {kind: 1.0 for kind in kinds if kind is not None})
        with self._lock:
            self._scripts.setdefault(endpoint, []).extend(kinds)
        return self

    def decide(self, endpoint: str) -> Fault:
        """The fault for the next call of ``endpoint``."""
        faults = self._for(endpoint)
        with self._lock:
            rng = self._rngs.get(endpoint)
            if rng is None:
                rng = self._rngs[endpoint] = random.Random(f"{self.seed}:{endpoint}")
            # Always three draws per call, so one endpoint's stream stays aligned.
            draw, slow, pick = rng.random(), rng.random(), rng.random()
            script = self._scripts.get(endpoint)
            kind = script.pop(0) if script else _walk(faults, draw)
            if kind is not None:
                self.injected[(endpoint, kind)] += 1
        delay = faults.delay if slow < faults.latency else 0.0
        return Fault(kind=kind, delay=delay, pick=pick)

    def count(self, kind: str | None = None, endpoint: str | None = None) -> int:
        """How many faults were served, optionally of one kind and endpoint."""
        with self._lock:
            return sum(
                n
                for (e, k), n in self.injected.items()
                if (kind is None or k == kind) and (endpoint is None or e == endpoint)
            )


def _walk(faults: Faults, draw: float) -> str | None:
    edge = 0.0
    for kind in FAULT_KINDS:
        edge += getattr(faults, kind)
        if draw < edge:
            return kind
    return None


def _check_endpoint(name: str) -> None:
    if name not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {name!r}; expected one of {sorted(ENDPOINTS)}")


def _check_kinds(endpoint: str, kinds: Mapping[str, float] | Iterable[str]) -> None:
    for kind in kinds:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if kind == "partial" and endpoint not in _PARTIAL_ENDPOINTS:
            raise ValueError(f"a partial failure only applies to stats and flush, not {endpoint}")
        if kind == "malformed" and endpoint in _EMPTY_ENDPOINTS:
            raise ValueError(f"{endpoint} answers an empty body: nothing to malform")
