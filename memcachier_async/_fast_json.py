"""The two big bodies (stats, history) decoded by msgspec, when it is installed.

msgspec is optional (the ``speedups`` extra). It parses JSON straight into
typed objects in C and builds attrs instances natively, so a stats body of
64 servers or a history of 10,000 records never becomes a tree of dicts.

The converter in ``_convert.py`` stays the authority on what a body means.
This path only takes the bodies it can decode *exactly* as the converter
would, and says ``None`` for every other one (a wrong type, a value out of
range, a field it does not know, anything unusual); the converter then
decodes that body itself and explains any failure with the field path.
Being stricter than the converter costs speed on odd bodies, never
correctness; tests/test_fast_decode.py holds the two to that.

Two passes, both in C:

1. a strict decode into private mirror structs (no GC tracking): every
   stats field present, an integer in range, no unknown field (those go to
   ``extra``, which only the converter fills);
2. ``msgspec.convert`` of the mirrors into the real models, in lax mode for
   one reason only: to turn the Unix seconds of ``time`` into an aware UTC
   datetime (every other value is already of its final type).

History timestamps (milliseconds in a string) become datetimes in a short
Python loop, once per distinct value: msgspec has no millisecond unit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any

import attrs
import msgspec

from ._models import HistoryRecord, ServerStats, Stats

__all__ = ["build"]

# msgspec's integer bounds must fit a signed 64-bit integer; a larger value
# (a counter in 2**63 ≤ v < 2**64) is refused here and left to the converter.
_INT64_MAX = 2**63 - 1
# More digits than this cannot be a valid id (< 2**63) or millisecond time:
# longer strings go to the converter, which checks them exactly.
_MAX_FAST_DIGITS = 18
_UTC = timezone.utc


def build(
    *, max_value: int, max_epoch_seconds: int, max_epoch_millis: int, max_id: int
) -> dict[Any, Callable[[bytes], Any]]:
    """``{model type: decode(body) -> model or None}`` for stats and history.

    The bounds are the converter's (inclusive); this path narrows them where
    msgspec cannot express them, never widens them.
    """
    value = Annotated[int, msgspec.Meta(ge=0, le=min(max_value, _INT64_MAX))]
    seconds = Annotated[int, msgspec.Meta(ge=0, le=min(max_epoch_seconds, _INT64_MAX))]
    names = [a.name for a in attrs.fields(ServerStats) if a.name != "extra"]
    mirror_stats: Any = msgspec.defstruct(
        "_WireServerStats",
        [(name, seconds if name == "time" else value) for name in names],
        forbid_unknown_fields=True,
        frozen=True,
        gc=False,
    )
    # Not frozen: the Python pass below swaps the strings for their values.
    # Unknown fields of a record are ignored, as the converter ignores them.
    mirror_record: Any = msgspec.defstruct(
        "_WireHistoryRecord",
        [("memcachier_id", str), ("server", str), ("stats", mirror_stats), ("timestamp", str)],
        gc=False,
    )
    stats_decoder = msgspec.json.Decoder(dict[str, mirror_stats])
    history_decoder = msgspec.json.Decoder(list[mirror_record])
    servers_type = dict[str, ServerStats]
    records_type = list[HistoryRecord]

    def stats(body: bytes) -> Stats | None:
        try:
            wire = stats_decoder.decode(body)
            servers = msgspec.convert(wire, servers_type, from_attributes=True, strict=False)
        except msgspec.MsgspecError:
            return None
        return Stats(servers)

    def digits(text: str, limit: int) -> int | None:
        # The converter's rule (ASCII digits only), on a string short enough
        # that the value is in range once checked against ``limit``.
        if len(text) <= _MAX_FAST_DIGITS and text.isascii() and text.isdigit():
            number = int(text)
            if number <= limit:
                return number
        return None

    def history(body: bytes) -> list[HistoryRecord] | None:
        try:
            wire: list[Any] = history_decoder.decode(body)
        except msgspec.MsgspecError:
            return None
        # The records of one sampling time share their timestamp and every
        # record its cache's id: each distinct string is converted once.
        ids: dict[str, int] = {}
        times: dict[str, datetime] = {}
        for record in wire:
            text = record.memcachier_id
            number = ids.get(text)
            if number is None:
                number = digits(text, max_id)
                if number is None:
                    return None
                ids[text] = number
            record.memcachier_id = number
            text = record.timestamp
            when = times.get(text)
            if when is None:
                millis = digits(text, max_epoch_millis)
                if millis is None:
                    return None
                # The converter's arithmetic exactly: seconds as a float.
                when = times[text] = datetime.fromtimestamp(millis / 1000, _UTC)
            record.timestamp = when
        try:
            return msgspec.convert(wire, records_type, from_attributes=True, strict=False)
        except msgspec.MsgspecError:  # pragma: no cover - every value was checked above
            return None

    return {Stats: stats, records_type: history}
