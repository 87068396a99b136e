"""A connection's session handing it over to another (pure values).

A session of the flow table (``sniffd.http.HttpSession``,
``sniffd.http2.H2Flow``) may find, from the bytes themselves, that from some
point on the connection is another session's to read: an HTTP/1.1 request
with ``Upgrade: h2c`` answered ``101`` (HTTP/2 from there), a client
stream that began like the HTTP/2 preface and then was not one (HTTP/1 after
all), or an HTTP/1 connection that is not HTTP from some point on (a CONNECT
tunnel, a 101 to another protocol, a stream that never looked like HTTP:
``sniffd.tls.starttls.TlsWatch`` looks for TLS in what follows).  It does not make that session itself (it knows neither the settings
nor the memory meter, and stages do not import each other): it says so, and
the flow table acts once the call that fed it returns.  The contract, for
every session type:

* ``session.successor``: ``None``, or the protocol the connection goes on
  in (``"h2c"``, ``"http1"``, ``"tls"``), set by the session during a ``feed``,
  ``end`` or ``close`` call, together with ``SWITCH`` put in its
  ``pairing.done``: the flow table looks there after every call anyway
  (finished transactions), so it reads ``successor`` only then and the
  common path pays nothing.  From then on the session parses nothing; it
  keeps what it gets for its successor.
* ``session.hand_over() -> Handover``, called once by the flow table right
  after that call (``FlowTable._succeed``): everything the successor needs;
  it takes ``SWITCH`` back out of ``pairing.done``.
  Transactions the session finished before the switch stay with it and are
  taken (``take()``) as usual.

The flow table makes the successor for ``protocol``, then makes on it the
``calls`` in order: what the old session was given from the switch on and
did not parse, so that not a byte, gap, FIN or note is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # an annotation only: sniffd.http imports this module
    from sniffd.http.message import Message


class _Switch:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SWITCH"


# What a session puts in ``pairing.done`` when it sets ``successor`` (see the
# module docstring); never a record: ``take()`` and ``hand_over()`` take it out
# (``unmark``).
SWITCH = _Switch()


def unmark(done: list) -> None:
    """Take ``SWITCH`` out of a session's ``pairing.done``, if it is there."""
    if SWITCH in done:
        done.remove(SWITCH)


class Upgrade(NamedTuple):
    """An HTTP/1.1 request that switched the connection to another protocol
    and the ``101`` that accepted it (RFC 9110 section 7.8)."""

    request: Message  # complete; the upgraded protocol's first request (h2c: stream 1's)
    switching: Message  # the 101 response
    depth: int  # the trans_depth the request's record takes
    anomalies: frozenset[str]  # already on the request's transaction
    connect: tuple[str | None, int] | None  # the CONNECT tunnel it came through, if any (Transaction.connect)
    sticky: frozenset[str]  # anomalies every record of the connection carries (HttpSession.sticky)


class Handover(NamedTuple):
    """What a session hands to its successor (see the module docstring).

    ``calls``: ``(method name, args)`` to make on the successor, in order:
    ``("feed", (from_client, chunks, now))`` with chunks as
    ``HttpSession.feed`` takes them (``(bytes, ts, ack)``, or an int: bytes
    lost), ``("note", (from_client, names))``, ``("note_at", (from_client,
    offset, names))``, ``("end", (from_client, now, why))`` (never a close:
    when the connection closes, the flow table closes the successor itself).
    ``upgrade``: for ``"h2c"``, the request that switched."""

    protocol: str
    calls: list[tuple[str, tuple]]
    upgrade: Upgrade | None = None
    # "tls": the cleartext protocol spoken so far ("http" for a CONNECT
    # tunnel or a 101), None when the stream was not HTTP (the watch names it).
    starttls: str | None = None


def whole_chunk(chunk, now: float, ack: int | None):
    """A chunk as ``HttpSession.feed`` takes it, made to carry its own time
    and ack (``(bytes, ts, ack)``; an int, bytes lost, stays as it is), so
    it can be fed later, elsewhere, the same."""
    cls = chunk.__class__
    if cls is int:
        return chunk
    if cls is tuple:
        return chunk if len(chunk) == 3 else (chunk[0], chunk[1], ack)
    return (chunk, now, ack)
