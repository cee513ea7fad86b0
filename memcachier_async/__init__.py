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
from ._retry import RetryBudget, RetryEvent, RetryPolicy, RetryTransport
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "APIError",
    "AsyncAnalytics",
    "Attempt",
    "AuthenticationError",
    "Capabilities",
    "Credential",
    "DecodeError",
    "HistoryRecord",
    "Insight",
    "MemcachierError",
    "MemoryUsage",
    "NewCredential",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
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
    "history_series",
    "insight",
]
