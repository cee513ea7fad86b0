"""memcachier-async: an async client of the MemCachier Analytics API."""

from ._capacity import capacity
from ._client import (
    DEFAULT_BASE_URL,
    DEFAULT_LIMITS,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_TIMEOUT,
    AsyncAnalytics,
)
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
    ResponseTooLargeError,
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
from ._logs import setup_from_env as _setup_logging_from_env
from ._models import (
    Capabilities,
    Capacity,
    Credential,
    HistoryRecord,
    NewCredential,
    ServerCapacity,
    ServerStats,
    Stats,
)
from ._poll import Poller, PollResult, PollRound, watch
from ._serialize import to_dict, to_json
from ._transports.hooks import RequestEvent, add_hooks, remove_hooks
from ._transports.retry import RetryBudget, RetryEvent, RetryPolicy, RetryTransport
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_TIMEOUT",
    "APIError",
    "AsyncAnalytics",
    "Attempt",
    "AuthenticationError",
    "CacheCredentials",
    "CacheResult",
    "CacheTimeout",
    "Capabilities",
    "Capacity",
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
    "RequestEvent",
    "ResponseTooLargeError",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "RetryTransport",
    "ServerCapacity",
    "ServerError",
    "ServerMemory",
    "ServerStats",
    "Stats",
    "TransportError",
    "UnknownCredentialError",
    "__version__",
    "add_hooks",
    "capacity",
    "fan_out",
    "history_series",
    "insight",
    "remove_hooks",
    "to_dict",
    "to_json",
    "watch",
]

# Tracebacks name an exception by its public path (memcachier_async.AuthenticationError),
# the one users import and catch, not the private module it lives in. Only exceptions:
# typing.get_type_hints() resolves a class's annotations in the module __module__ names,
# so the models (and pydantic reading them) need their own.
for _name in __all__:
    _public = globals()[_name]
    if isinstance(_public, type) and issubclass(_public, BaseException):
        _public.__module__ = __name__
del _name, _public

_setup_logging_from_env()
