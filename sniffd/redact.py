"""Redaction (pure): no secrets in the logs.

sniffd writes down what crossed the wire, and the wire carries passwords,
session cookies and bearer tokens.  A log line is copied, shipped and kept for
a long time by people who should never hold those credentials, so every value
that is a credential is replaced before the record is built.

Each secret becomes a keyed-hash *token*: ``"hmac:"`` followed by the first 16
hex digits (64 bits) of HMAC-SHA256(key, secret).  An operator can still see
that two requests carried the same credential (same token), or that a
session cookie changed, without seeing the credential.  Why keyed and not a
plain hash: passwords and PINs are guessable, and an unkeyed hash of a guessable
value is reversed by trying the guesses.  So:

- the key must stay secret: whoever holds the key and a log can test guesses
  against every token in it;
- the key must be stable: rotating it changes every token, so tokens written
  before and after the rotation no longer match.

64 bits keep the token short; two different secrets share a token with
probability about n^2 / 2^65 for n distinct secrets, negligible for the
correlation it is used for.

What is redacted (names matched as described on each method):

- headers in ``headers`` (default ``DEFAULT_HEADERS``): Authorization and
  Proxy-Authorization keep their auth scheme; Cookie and Set-Cookie keep cookie
  names and Set-Cookie attributes; any other listed header is tokenised whole;
- query-string parameters, ``application/x-www-form-urlencoded`` body fields
  and JSON object members whose name is in ``params`` (default
  ``DEFAULT_PARAMS``); the password in an absolute URI's userinfo.

A token always hashes the secret's bytes as the client sent them, after
undoing transport syntax: percent-decoding (and "+" as space) for query and
form values, JSON unescaping for JSON strings.  So the same credential gives
the same token whether it was sent as ``?access_token=X``, in a form, in a JSON
body or as ``Authorization: Bearer X``.

Sans-I/O: no clock, no files, no threads.  The key arrives as bytes from the
caller (the config loader reads it); every method maps values to values and
never raises because of what came off the wire.
"""

from __future__ import annotations

import hashlib
import hmac
import json as _json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

TOKEN_PREFIX = "hmac:"

# Why 16: 128 bits cannot be guessed, and a guessable key would let anyone with
# a log test guesses of the secrets behind its tokens.  RFC 2104 section 3
# recommends a key at least as long as the hash output (32 bytes for SHA-256):
# generate 32 random bytes; 16 is the floor below which sniffd refuses.
MIN_KEY_BYTES = 16

# Headers that carry credentials by definition (RFC 9110 sections 11.6.2 and
# 11.7.2, RFC 6265 sections 4.1 and 4.2).  Operators add their own (x-api-key,
# x-auth-token, ...) by passing ``DEFAULT_HEADERS | extra``.
DEFAULT_HEADERS: frozenset[str] = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

# Parameter names (query string, form fields, JSON keys) whose values are
# credentials.  Matched case-insensitively and ignoring "-" and "_" (so
# ``api_key``, ``apiKey`` and ``API-KEY`` are one name; see ``_norm``).
DEFAULT_PARAMS: frozenset[str] = frozenset(
    {
        # passwords, and the fields of change-password forms
        "password", "passwd", "pwd", "pass", "passphrase",
        "new_password", "old_password", "current_password", "password_confirmation",
        # generic secrets and API keys (Google APIs take ?key=)
        "secret", "client_secret", "secret_key", "private_key",
        "api_key", "apikey", "api-key", "key",
        # bearer tokens (RFC 6750 section 2.3 allows ?access_token=) and OAuth 2.0
        "token", "access_token", "refresh_token", "id_token", "auth_token",
        "auth", "authorization",
        # OAuth 2.0 authorization code (RFC 6749 section 4.1.2): exchangeable
        # for tokens until it expires, and it travels in a redirect's query.
        "code",
        # session identifiers: whoever has one is logged in
        "session", "sessionid", "session_id", "sid", "jsessionid", "phpsessid",
        # signed URLs: the signature is the credential (AWS SigV4 presigned
        # URLs, Google Cloud signed URLs, Azure SAS "sig")
        "signature", "sig", "x-amz-signature", "x-amz-security-token", "x-goog-signature",
    }
)  # fmt: skip

_WS = " \t"
# RFC 9110 section 5.6.2 token characters (a cookie name is a token, RFC 6265
# section 4.1.1).
_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
# A comma in a joined Set-Cookie value separates two cookies only where a new
# "name=" follows.  Expires dates contain a comma, but in every HTTP-date
# format that has one (RFC 9110 section 5.6.7: "Wed, 21 Oct 2026 07:28:00 GMT",
# "Wednesday, 21-Oct-26 07:28:00 GMT") what follows it is the day number and
# a space, never a token and "=".  A comma inside a cookie value ("a,b",
# invalid but sent) is not followed by "=" either.
_SET_COOKIE_SPLIT = re.compile(r"(,[ \t]*)(?=[" + _TCHAR + r"]+[ \t]*=)")
_AUTH = re.compile(r"([ \t]*\S+)([ \t]+)(.*)", re.S)
_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#]*)")
# One name=value pair of a query or form (the name may be empty, the value
# may contain "=").
_PAIR_S = re.compile(r"(?:^|(?<=&))([^&=]*)=([^&]*)")
_PAIR_B = re.compile(rb"(?:^|(?<=&))([^&=]*)=([^&]*)")
# The names of the pairs _PAIR_S finds.
_NAMES_S = re.compile(r"(?:^|(?<=&))([^&=]*)=")
_BRACKETS = re.compile(r"\[([^\]]*)\]")
# A JSON string, escapes included (RFC 8259 section 7).
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_JSON_DECODER = _json.JSONDecoder()


def _norm(name: str) -> str:
    """The form a parameter or JSON key name is compared in: lowercase, without
    "-" and "_", so the spellings APIs use for one name (``access_token``,
    ``accessToken``, ``access-token``) all match."""
    return name.lower().replace("-", "").replace("_", "")


def _to_bytes(text: str) -> bytes:
    """The bytes a str value stands for.  Header values and URIs keep invalid
    UTF-8 as lone surrogates U+DC80..U+DCFF (``surrogateescape``, see the
    README's Encoding section); a JSON "\\ud800" escape can produce other lone
    surrogates, which only ``surrogatepass`` can encode."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _ws_len(s: str, i: int) -> int:
    """Index of the first non-whitespace character at or after ``i``."""
    n = len(s)
    while i < n and s[i] in " \t\r\n":
        i += 1
    return i


class Redactor:
    """Replaces credentials in headers, URIs and bodies by keyed-hash tokens.

    ``key``: the HMAC key, at least ``MIN_KEY_BYTES`` bytes; secret and
    stable (see the module docstring).  ``headers``: header names to redact
    (any case).  ``params``: query/form/JSON parameter names to redact (any
    case, "-" and "_" ignored).  Both are the whole set: pass
    ``DEFAULT_HEADERS | extra`` to add to the defaults.

    The sets are kept as ``header_names`` and ``params`` (``headers`` is
    the method).  Bad configuration raises ``ValueError`` here, naming the
    argument.
    """

    def __init__(
        self,
        key: bytes,
        headers: frozenset[str] = DEFAULT_HEADERS,
        params: frozenset[str] = DEFAULT_PARAMS,
    ) -> None:
        if not isinstance(key, (bytes, bytearray)):
            raise ValueError("redact key must be bytes")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"redact key must be at least {MIN_KEY_BYTES} bytes (got {len(key)})")
        for name, names in (("headers", headers), ("params", params)):
            if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"redact {name} must be a set of non-empty names")
        self.header_names: frozenset[str] = frozenset(h.lower() for h in headers)
        self.params: frozenset[str] = frozenset(params)
        self._params_norm = frozenset(_norm(p) for p in params)
        self._mac = hmac.new(bytes(key), digestmod=hashlib.sha256)
        self._memo: dict[tuple[bytes, frozenset[str]], bool] = {}
        # Query shapes (the tuple of parameter names) -> does any name match?
        self._shapes: dict[tuple[str, ...], bool] = {}

    # ------------------------------------------------------------ tokens

    def token(self, secret: bytes) -> str:
        """``"hmac:"`` + first 16 hex digits of HMAC-SHA256(key, secret)."""
        mac = self._mac.copy()
        mac.update(secret)
        return TOKEN_PREFIX + mac.hexdigest()[:16]

    def _tok(self, text: str) -> str:
        return self.token(_to_bytes(text))

    # ------------------------------------------------------------ headers

    def headers(self, h: dict[str, str], lowercase: bool = False) -> tuple[dict[str, str], list[str]]:
        """A copy of ``h`` (same keys, same order) with the configured headers
        redacted, and the names of the headers that were (in ``h``'s order).

        A name is listed whenever it is configured and present, so a reader
        knows its value holds tokens, not what was sent.  Joined repeats
        (``", "``, as the records hold them) are handled for Set-Cookie; for
        the others the joined value is redacted as one.

        ``lowercase``: the caller vouches that every name in ``h`` is
        lowercase already (sniffd's parsed messages: http.py lowers them),
        which saves looking at each name of every record.
        """
        if self.header_names.isdisjoint(h) and (lowercase or all(name == name.lower() for name in h)):
            # The common case (sniffd's header names are lowercase already):
            # nothing to redact, no copy.  The caller must not mutate it.
            return h, []
        out: dict[str, str] = {}
        names: list[str] = []
        for name, value in h.items():
            lname = name.lower()
            if lname not in self.header_names:
                out[name] = value
                continue
            names.append(name)
            if lname in ("authorization", "proxy-authorization"):
                out[name] = self._authorization(value)
            elif lname == "cookie":
                out[name] = self._cookie(value)
            elif lname == "set-cookie":
                out[name] = self._set_cookie(value)
            else:
                out[name] = self._tok(value) if value else value
        return out, names

    def _authorization(self, value: str) -> str:
        """``<scheme> <credentials>`` (RFC 9110 section 11.4): the scheme is
        kept (Basic, Bearer, Digest, ...: useful, not secret), everything after
        it is one token, Digest parameters included (the simplest rule that
        never leaves a secret parameter behind).  A value of one word is all
        credentials."""
        m = _AUTH.fullmatch(value)
        if m is None or not m.group(3):
            return self._tok(value) if value.strip(_WS) else value
        return m.group(1) + m.group(2) + self._tok(m.group(3))

    def _cookie_pair(self, piece: str) -> str:
        """``name=value`` -> ``name=<token>``, whitespace kept.  A piece
        without "=" is a nameless cookie (RFC 6265bis section 5.6): all value."""
        core = piece.strip(_WS)
        if not core:
            return piece
        lead = piece[: len(piece) - len(piece.lstrip(_WS))]
        trail = piece[len(piece.rstrip(_WS)) :]
        if "=" not in core:
            return lead + self._tok(core) + trail
        name, value = core.split("=", 1)
        vlead = value[: len(value) - len(value.lstrip(_WS))]
        value = value.lstrip(_WS)
        return lead + name + "=" + vlead + (self._tok(value) if value else "") + trail

    def _cookie(self, value: str) -> str:
        """``a=1; b=2`` (RFC 6265 section 4.2.1): names kept, each value a token."""
        return ";".join(self._cookie_pair(p) for p in value.split(";"))

    def _set_cookie(self, value: str) -> str:
        """``name=value; Path=/; Expires=...`` (RFC 6265 section 4.1.1): the
        value of the first pair is a token, the attributes are kept.  Several
        Set-Cookie fields joined with ", " are split first (see
        ``_SET_COOKIE_SPLIT``)."""
        parts = _SET_COOKIE_SPLIT.split(value)
        cookies, seps = parts[0::2], parts[1::2]
        out = []
        for c in cookies:
            first, sep, attrs = c.partition(";")
            out.append(self._cookie_pair(first) + sep + attrs)
        return "".join(o + s for o, s in zip(out, seps + [""], strict=True))

    # ------------------------------------------------------------ parameters

    def _param_is_secret(self, raw_name: bytes, keys: frozenset[str]) -> bool:
        """``raw_name`` as sent (percent-encoded, "+" for space).  Matches the
        whole name, and each part of a bracketed name as Rails and PHP forms
        send them (``user[password]``, ``password[]``).

        Answers are remembered per (name, list): parameter names repeat on
        every request of a site, and this runs for each one of each record
        (profiling showed ~13 us per URI before).  The memo is bounded."""
        memo = self._memo
        hit = memo.get((raw_name, keys))
        if hit is not None:
            return hit
        if len(memo) >= 4096:
            memo.clear()
        hit = memo[(raw_name, keys)] = self._param_is_secret_uncached(raw_name, keys)
        return hit

    def _param_is_secret_uncached(self, raw_name: bytes, keys: frozenset[str]) -> bool:
        name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8", "replace")
        if _norm(name) in keys:
            return True
        base = name.split("[", 1)[0]
        return _norm(base) in keys or any(_norm(part) in keys for part in _BRACKETS.findall(name))

    def _pairs(self, s, to_bytes, keys: frozenset[str]):
        """Redacts ``name=value`` pairs separated by "&" in ``s`` (str or
        bytes; WHATWG URL "application/x-www-form-urlencoded parsing": ";" is
        not a separator there).  Returns ``(s', changed)``.

        Only the values of matching names change; a pair without "=" or with
        an empty value has nothing to hide and is kept.  ``s`` itself is
        returned when nothing changed, and pieces are only copied when
        something did (bodies can be large).
        """
        is_bytes = isinstance(s, (bytes, bytearray))
        out: list = []
        last = 0
        for m in (_PAIR_B if is_bytes else _PAIR_S).finditer(s):
            value = m.group(2)
            if not value or not self._param_is_secret(to_bytes(m.group(1)), keys):
                continue
            tok = self.token(unquote_to_bytes(to_bytes(value).replace(b"+", b" ")))
            out.append(s[last : m.start(2)])
            out.append(tok.encode("ascii") if is_bytes else tok)
            last = m.end(2)
        if not out:
            return s, False
        out.append(s[last:])
        return (b"" if is_bytes else "").join(out), True

    def uri(self, uri: str) -> tuple[str, bool]:
        """``uri`` with the configured query parameters' values replaced by
        tokens, and whether anything was.

        Everything else is kept character for character: path, parameter
        order, other parameters, their encoding.  Names are compared after
        percent-decoding.  Also redacted:

        - the password of an absolute-form URI's userinfo
          (``http://user:pw@host/``; a userinfo without ":" is tokenised whole,
          since tokens are often sent as the user name).  RFC 9110 section
          4.2.4 forbids sending userinfo, but proxies see what clients send;
        - parameters in a fragment.  Clients do not send fragments, but when
          one does appear it is as likely to hold an OAuth implicit-grant
          ``#access_token=`` (RFC 6749 section 4.2.2) as anything else.
        """
        if "#" not in uri and "@" not in uri:
            q = uri.find("?")
            if q < 0:
                return uri, False  # nothing that can hold a secret
            # A path and a query, the common URI.  Only a configured name
            # can make a value secret, and sites send the same names on
            # every request: whether a shape of names holds one is looked up
            # once (bounded memo), and most queries are returned unread.
            names = tuple(_NAMES_S.findall(uri[q + 1 :]))
            shapes = self._shapes
            hit = shapes.get(names)
            if hit is None:
                if len(shapes) >= 4096:
                    shapes.clear()
                keys = self._params_norm
                hit = shapes[names] = any(self._param_is_secret(_to_bytes(n), keys) for n in names)
            if not hit:
                return uri, False
        changed = False
        head, hash_, fragment = uri.partition("#")
        m = _ABSOLUTE.match(head)
        if m and "@" in m.group(2):
            userinfo, host = m.group(2).rsplit("@", 1)
            user, colon, password = userinfo.partition(":")
            if colon:
                userinfo = user + ":" + (self.token(unquote_to_bytes(_to_bytes(password))) if password else "")
            else:
                userinfo = self.token(unquote_to_bytes(_to_bytes(user)))
            head = m.group(1) + userinfo + "@" + host + head[m.end() :]
            changed = True
        path, q, query = head.partition("?")
        if q:
            query, c = self._pairs(query, _to_bytes, self._params_norm)
            changed |= c
        if hash_:
            fragment, c = self._pairs(fragment, _to_bytes, self._params_norm)
            changed |= c
        return path + q + query + hash_ + fragment, changed

    def form(self, body: bytes) -> bytes:
        """An ``application/x-www-form-urlencoded`` body with the configured
        fields' values replaced by tokens; all other bytes kept.  The result is
        ``body`` itself when nothing was redacted."""
        return self._pairs(body, bytes, self._params_norm)[0]

    # ------------------------------------------------------------ JSON

    def _keys(self, keys: frozenset[str] | None) -> frozenset[str]:
        return self._params_norm if keys is None else frozenset(_norm(k) for k in keys)

    def _json_token(self, value: Any) -> str:
        """A string is hashed as its own UTF-8 bytes (so it matches the same
        secret sent in a header or a query); any other value as its compact
        JSON serialisation."""
        if isinstance(value, str):
            return self._tok(value)
        return self._tok(_json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    def json(self, obj: Any, keys: frozenset[str] | None = None) -> Any:
        """A copy of a parsed JSON value in which every object member whose
        name is in ``keys`` (default ``params``; any depth, inside arrays too)
        has its value, whatever its type, replaced by its token string.
        Iterative, so nesting depth cannot exhaust the stack."""
        keys = self._keys(keys)

        def copy(v: Any) -> Any:
            return {} if isinstance(v, dict) else [] if isinstance(v, list) else v

        root = copy(obj)
        stack = [(obj, root)] if isinstance(obj, (dict, list)) else []
        while stack:
            src, dst = stack.pop()
            items = src.items() if isinstance(src, dict) else enumerate(src)
            for k, v in items:
                if isinstance(src, dict) and isinstance(k, str) and _norm(k) in keys:
                    new = self._json_token(v)
                else:
                    new = copy(v)
                    if isinstance(v, (dict, list)):
                        stack.append((v, new))
                if isinstance(dst, dict):
                    dst[k] = new
                else:
                    dst.append(new)
        return root

    def json_text(self, text: str, keys: frozenset[str] | None = None) -> tuple[str, bool]:
        """JSON text with the values of members named in ``keys`` (default
        ``params``; any depth) replaced by ``"<token>"``, and whether any was.

        Works on the text, not on a parsed copy, so that:

        - every other character is kept as sent (no re-serialisation changing
          numbers, whitespace or escapes, no duplicate member silently
          dropped: duplicates are a known way to smuggle a second value past a
          parser);
        - text that is not valid JSON, above all a body cut short by a size
          cap, is still redacted: a value that runs to the end of the text, or
          does not parse, is tokenised together with everything after it.

        A string followed by ":" is a member name (RFC 8259 section 4); the
        scan jumps from string to string, so a quote inside a string is never
        mistaken for the start of a name.  The result is ``text`` itself when
        nothing was redacted.
        """
        keys = self._keys(keys)
        out: list[str] = []
        last = pos = 0
        n = len(text)
        while True:
            q = text.find('"', pos)
            if q < 0:
                break
            m = _JSON_STRING.match(text, q)
            if m is None:  # an unterminated string runs to the end
                break
            j = _ws_len(text, m.end())
            if j >= n or text[j] != ":":
                pos = m.end()
                continue
            try:
                name = _json.loads(m.group())
            except ValueError:
                name = m.group()[1:-1]
            v = _ws_len(text, j + 1)
            if _norm(name) not in keys or v >= n:
                pos = j + 1
                continue
            try:
                value, end = _JSON_DECODER.raw_decode(text, v)
                tok = self._json_token(value)
            except (ValueError, RecursionError):
                end, tok = n, self._tok(text[v:])
            out.append(text[last:v])
            out.append('"' + tok + '"')
            last = pos = end
        if not out:
            return text, False
        out.append(text[last:])
        return "".join(out), True
