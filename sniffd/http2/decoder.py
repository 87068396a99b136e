"""HPACK (RFC 7541) for one direction of an HTTP/2 connection: a wrapper
around python-hyper's ``hpack.Decoder`` that a passive observer can use.

Every header block a direction sends (HEADERS and PUSH_PROMISE, with their
CONTINUATION frames) goes through that direction's decoder, in order,
whatever happens to the stream it belongs to: the dynamic table is shared by
all streams (RFC 7541 section 2.3.2), so one block skipped makes every later
one unreadable.  Once a block could not be decoded (lost to a capture gap,
too large to keep, rejected by the library, abandoned mid-way), the decoder
is ``broken`` and decodes nothing more: sniffd does not guess headers from a
table it knows is wrong.

Call order::

    dec = HeaderDecoder(max_header_list_bytes)
    dec.announce(n)                    # the receiver's SETTINGS_HEADER_TABLE_SIZE
    fields, anomaly = dec.decode(block)  # [(name, value)] as bytes (None: not
                                       # decoded), and what was wrong or odd
    dec.lose(name)                     # a block was lost: broken from now on

Never raises on wire bytes.
"""

from __future__ import annotations

import importlib

# python-hyper's hpack is imported when the first HTTP/2 connection needs it:
# at start-up it cost every `sniffd read` ~17 ms (35 M instructions, 3% of a
# 30,000-packet read under callgrind), HTTP/2 or not.
hpack = None


def _hpack():
    global hpack
    if hpack is None:
        hpack = importlib.import_module("hpack")
    return hpack

# RFC 7541 section 4.2 / RFC 9113 section 6.5.2: the dynamic table starts at
# 4,096 bytes until the receiver announces another SETTINGS_HEADER_TABLE_SIZE.
DEFAULT_TABLE_BYTES = 4096

# The largest dynamic table sniffd keeps per direction.  Chrome announces
# 65,536 (the largest common value; nghttp2, Go and Firefox use 4,096), so
# real encoders stay within it.  An encoder told it may use more (a receiver
# announced up to 2^32 - 1) that does gets http2_hpack_table_limit and the
# direction is broken: memory per connection stays bounded.
MAX_TABLE_BYTES = 65_536


class HeaderDecoder:
    """One direction's HPACK state.  ``broken``: the anomaly name that broke
    it (None while it decodes); ``announced``: the largest dynamic table
    size the receiver has allowed so far."""

    __slots__ = ("dec", "broken", "announced", "oversized")

    def __init__(self, max_header_list_bytes: int) -> None:
        self.dec = _hpack().Decoder(max_header_list_size=max_header_list_bytes)
        # The library checks every dynamic table size update against this.
        # It is held at sniffd's bound, not at the receiver's latest
        # SETTINGS_HEADER_TABLE_SIZE: when that setting takes effect depends
        # on the SETTINGS ACK in the other direction (RFC 9113 section
        # 6.5.3), whose bytes may be fed before or after this block.  Being
        # lenient costs nothing: the table size only changes through the
        # encoder's own size updates (RFC 7541 section 4.2), which decode
        # the same whatever the limit.  Use beyond the receiver's largest
        # announcement is still named (http2_hpack_table_size).
        self.dec.max_allowed_table_size = MAX_TABLE_BYTES
        self.broken: str | None = None
        self.announced = DEFAULT_TABLE_BYTES
        self.oversized = False  # the receiver allowed more than MAX_TABLE_BYTES

    @property
    def table_bytes(self) -> int:
        """The dynamic table's size as RFC 7541 section 4.1 counts it (the
        entries' bytes plus 32 each): the memory it holds, near enough."""
        return getattr(self.dec.header_table, "_current_size", 0) if self.broken is None else 0

    def announce(self, size: int) -> None:
        """The receiver sent SETTINGS_HEADER_TABLE_SIZE = ``size``."""
        if size > self.announced:
            self.announced = size
        if size > MAX_TABLE_BYTES:
            self.oversized = True

    def lose(self, name: str) -> None:
        """A block of this direction was not decoded (``name`` says why):
        the table no longer matches the encoder's."""
        if self.broken is None:
            self.broken = name
            # Free the table now: nothing will read it again.
            self.dec = None

    def decode(self, block: bytes) -> tuple[list[tuple[bytes, bytes]] | None, str | None]:
        """``(fields, anomaly)``: the block's fields as raw ``(name, value)``
        bytes in order, or None when it could not be decoded; ``anomaly``
        names what went wrong or was odd (None: nothing)."""
        if self.broken is not None:
            return None, "http2_hpack_desync"
        dec = self.dec
        try:
            # raw=True: bytes as sent.  The library's UTF-8 step raises only
            # after the block updated the table; bytes that are not UTF-8
            # are kept as sniffd keeps them in HTTP/1 (syntax.text).
            fields = dec.decode(block, raw=True)
        except hpack.OversizedHeaderListError:
            self.lose("http2_header_list_limit")
            return None, "http2_header_list_limit"
        except hpack.InvalidTableSizeError:
            name = "http2_hpack_table_limit" if self.oversized else "http2_hpack_error"
            self.lose(name)
            return None, name
        except Exception:
            # HPACKDecodingError, InvalidTableIndexError, and anything else
            # the library lets out on hostile bytes (a bug of its own must
            # not cross this stage either): the table state is unknown now.
            self.lose("http2_hpack_error")
            return None, "http2_hpack_error"
        odd = None
        if dec.header_table.maxsize > max(self.announced, DEFAULT_TABLE_BYTES):
            # RFC 7541 section 4.2: an encoder must not use a table larger
            # than the receiver allowed; a receiver fails the connection.
            odd = "http2_hpack_table_size"
        return [(bytes(n), bytes(v)) for n, v in fields], odd
