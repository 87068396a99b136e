"""The HTTP/2 in clear (h2c) stage: one connection's two byte streams ->
one ``Transaction`` per stream, the same values the HTTP/1 stage gives the
records stage (``sniffd.http.message``).  Sans-I/O.

Modules, one job each, in the order data flows:

* ``frames``: the preface and frames on the wire, one direction's
  incremental splitter (``FrameReader``), payload layouts;
* ``decoder``: one direction's HPACK state around python-hyper's ``hpack``
  (``HeaderDecoder``), and what breaks it;
* ``fields``: a decoded header section -> Message fields (pseudo-headers,
  cookies, malformed sections, gRPC status);
* ``streams``: one stream's request and response sides (``Stream``, ``Side``,
  ``TRANSITIONS``) -> its Transaction;
* ``connection``: the stage's interface (``H2Connection``): frames to
  streams, SETTINGS, GOAWAY, gaps, bounds;
* ``flow``: ``H2Connection`` behind the calls the flow table makes of a
  connection's session (``H2Flow``): prior knowledge, the hand-over from
  HTTP/1 after ``Upgrade: h2c``, memory;
* ``anomalies``: the names this stage adds (``H2_ANOMALIES``).
"""

from sniffd.http2.anomalies import H2_ANOMALIES
from sniffd.http2.frames import PREFACE, looks_like_h2_preface, looks_like_h2_server_preface

__all__ = ["H2_ANOMALIES", "H2Connection", "H2Flow", "PREFACE", "looks_like_h2_preface",
           "looks_like_h2_server_preface"]


def __getattr__(name: str):
    """``H2Connection`` and ``H2Flow`` are loaded when first asked for (PEP
    562): the flow table and sniffd.anomalies import this package for the
    preface checks and the names, and a run that sees no HTTP/2 should not
    load the stage (with hpack, ~35 M instructions of every start-up)."""
    if name == "H2Connection":
        from sniffd.http2.connection import H2Connection

        return H2Connection
    if name == "H2Flow":
        from sniffd.http2.flow import H2Flow

        return H2Flow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
