"""memcachier-async: an async client of the MemCachier Analytics API."""

from ._client import DEFAULT_BASE_URL, DEFAULT_LIMITS, DEFAULT_TIMEOUT, AsyncAnalytics
from ._errors import (
    APIError,
    Attempt,
    AuthenticationError,
    DecodeError,
    MemcachierError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    UnknownCredentialError,
)
from ._fanout import CacheCredentials, CacheResult, CacheTimeout, FanOut, fan_out
from ._insight import (
    Insight,
    MemoryUsage,
    ProcessedStats,
    ServerMemory,
    history_series,
    insight,
)
from ._models import (
    Capabilities,
    Credential,
    HistoryRecord,
    NewCredential,
    ServerStats,
    Stats,
)
from ._poll import Poller, PollResult, PollRound, watch
from ._transports.retry import RetryBudget, RetryEvent, RetryPolicy, RetryTransport
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "APIError",
    "AsyncAnalytics",
    "Attempt",
    "AuthenticationError",
    "CacheCredentials",
    "CacheResult",
    "CacheTimeout",
    "Capabilities",
    "Credential",
    "DecodeError",
    "FanOut",
    "HistoryRecord",
    "Insight",
    "MemcachierError",
    "MemoryUsage",
    "NewCredential",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "PollResult",
    "PollRound",
    "Poller",
    "ProcessedStats",
    "RateLimitError",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "RetryTransport",
    "ServerError",
    "ServerMemory",
    "ServerStats",
    "Stats",
    "TransportError",
    "UnknownCredentialError",
    "__version__",
    "fan_out",
    "history_series",
    "insight",
    "watch",
]
