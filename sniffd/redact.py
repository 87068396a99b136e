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

What is redacted (each rule is written down on the method that applies it;
the README's "Redaction" section lists them all with examples):

- headers (``Redactor.headers``): the configured ``headers`` (default
  ``DEFAULT_HEADERS``) by their rule (``HEADER_RULES``: Authorization keeps
  its scheme, cookies keep their names, URL headers such as Referer and
  Location have their URL redacted like a request target, bearer tokens in
  Sec-WebSocket-Protocol; any other listed header is tokenised whole); any
  other header whose *name* is secret by the word rules below (``X-Vault-Token``,
  ``Ocp-Apim-Subscription-Key``) is tokenised whole, and one whose name ends
  in a URL word (``X-Original-URL``) is redacted like a URL;
- URLs (``Redactor.uri``: the request target, URL headers, the CONNECT
  target): parameters of the query and of the fragment separated by ``&`` or
  ``;``, path parameters (``/a;jsessionid=X``), the password of the userinfo
  (``user:pw@``) in any form that has an authority;
- ``application/x-www-form-urlencoded`` bodies and JSON members, by name;
- XML bodies: text of elements and values of attributes with a secret name
  (WS-Security ``<wsse:Password>``), and SAML ``<Assertion>`` elements whole.

A parameter, JSON member, XML element or header name is secret when
(``secret_name``): its spelling, lowercased and without ``-`` and ``_``, is
in ``params`` (default ``DEFAULT_PARAMS``; also each part of a bracketed name
``user[password]``); or, unless ``match_words=False``, by its *words* (the
name split at ``_ - . [ ]``, any other non-alphanumeric character and case
changes, ``userPassword`` -> ``user password``): it contains a stem of
``SECRET_STEMS`` once its separators are removed (``user_password``,
``oauth_token``), one of its words is in ``SECRET_WORDS`` (``db_pass``), its
last word is in ``SECRET_LAST_WORDS`` (``x-api-key``, ``user[sid]``; but
``key_id``, ``keyword`` and ``monkey`` are not secret), or its last two
words are in ``SECRET_LAST_PHRASES`` (``auth_code``; a bare ``code`` is in
``DEFAULT_PARAMS``, but ``country_code`` is not secret).

A token always hashes the secret's bytes as the client sent them, after
undoing transport syntax: percent-decoding (and "+" as space) for query and
form values, JSON unescaping for JSON strings, XML entities and CDATA for XML
text, base64url for Kubernetes' WebSocket bearer tokens.  So the same
credential gives the same token whether it was sent as ``?access_token=X``,
in a form, in a JSON body or as ``Authorization: Bearer X``.

Speed: redaction runs on every record.  Every decision about a *name* (is
this header, parameter, member name secret?) is remembered in a bounded memo,
since a site sends the same names on every request; a header section whose
names are all known to be plain is returned at once, a query whose shape
(tuple of names) holds no secret name is returned unread, and a short URL
header value (a page's URL, the Referer of all its subresources) is
redacted once.

Sans-I/O: no clock, no files, no threads.  The key arrives as bytes from the
caller (the config loader reads it); every method maps values to values and
never raises because of what came off the wire.
"""

from __future__ import annotations

import base64
import binascii
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

# How a configured header's value is redacted, by name (``Redactor.headers``);
# a configured name not in this table is tokenised whole ("whole").
HEADER_RULES: dict[str, str] = {
    # RFC 9110 sections 11.6.2 and 11.7.2: "<scheme> <credentials>".
    "authorization": "authorization",
    "proxy-authorization": "authorization",
    # RFC 6265 sections 4.2 and 4.1; RFC 2965's obsolete Cookie2/Set-Cookie2
    # carry the same syntax.
    "cookie": "cookie",
    "cookie2": "cookie",
    "set-cookie": "set_cookie",
    "set-cookie2": "set_cookie",
    # URLs: an OAuth redirect puts ?code= and #access_token= in Location
    # (RFC 6749 sections 4.1.2 and 4.2.2); the next request repeats the URL
    # in Referer; Content-Location and Refresh name URLs too; Link carries
    # URLs in <...> (pagination links repeat the query, ?access_token= too).
    "referer": "url",
    "location": "url",
    "content-location": "url",
    "refresh": "refresh",
    "link": "link",
    # Browsers cannot set headers on a WebSocket handshake, so APIs smuggle
    # the bearer token in as a subprotocol (Kubernetes, AWS AppSync).
    "sec-websocket-protocol": "websocket_protocol",
    # HTTP/2's authority, kept beside host when the two differ
    # (sniffd.http2.fields): a userinfo is forbidden there (RFC 9113
    # section 8.3.1) but clients that put user:password@ in a URL send it.
    ":authority": "authority",
}

# Headers redacted by default: those of HEADER_RULES, and the usual names of
# API keys and tokens (tokenised whole).  Many more names are caught by the
# word rules (``secret_name``): X-Vault-Token, Private-Token, X-Goog-Api-Key,
# Ocp-Apim-Subscription-Key, X-Amz-Server-Side-Encryption-Customer-Key, ...
# Operators add their own with ``DEFAULT_HEADERS | extra``.
DEFAULT_HEADERS: frozenset[str] = frozenset(HEADER_RULES) | frozenset(
    {
        "x-api-key", "api-key", "apikey", "x-auth-token", "x-access-token", "x-amz-security-token",
        # A CSRF token is bound to the session: with the session cookie
        # redacted, the header copy of it (Angular's X-XSRF-TOKEN repeats the
        # XSRF-TOKEN cookie) must not give it away.
        "x-csrf-token", "x-xsrf-token", "x-csrftoken",
        # AWS ALB's OIDC headers: the user's access token, and a signed JWT of
        # their claims that the backend accepts as proof of login.
        "x-amzn-oidc-accesstoken", "x-amzn-oidc-data",
    }
)  # fmt: skip

# Header names that the word rules would call secret but that are not: the
# WebSocket key is a public nonce (RFC 6455 section 4.1) and Surrogate-Key a
# list of cache tags.
NOT_SECRET_HEADERS: frozenset[str] = frozenset({"sec-websocket-key", "surrogate-key"})

# A header name whose last word is one of these holds a URL (X-Original-URL,
# X-Forwarded-Uri, X-Envoy-Original-Path, X-Rewrite-URL): its URL is redacted
# as a request target, so a proxy's copy of the URI does not undo the URI's
# redaction.
URL_HEADER_WORDS: frozenset[str] = frozenset({"url", "uri", "path", "location", "referer", "referrer"})

# Parameter names (query string, form fields, JSON keys) whose values are
# credentials, matched whole: case-insensitively and ignoring "-" and "_" (so
# ``api_key``, ``apiKey`` and ``API-KEY`` are one name; see ``_norm``).  The
# word rules below catch the many other names built from these words.
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
        # Only the bare name: "country_code" and "status_code" are not secret.
        "code",
        # OAuth: PKCE's code_verifier (RFC 7636) and a JWT assertion
        # (RFC 7523) are exchangeable for tokens; OAuth 1.0a's request token
        # and verifier (RFC 5849 section 2.2).
        "code_verifier", "assertion", "client_assertion", "oauth_token", "oauth_verifier",
        # session identifiers: whoever has one is logged in
        "session", "sessionid", "session_id", "sid", "jsessionid", "phpsessid",
        # signed URLs: the signature is the credential (AWS SigV4 presigned
        # URLs, Google Cloud signed URLs, Azure SAS "sig")
        "signature", "sig", "x-amz-signature", "x-amz-security-token", "x-goog-signature",
        # Single sign-on: a CAS service ticket (?ticket=ST-...) and proxy
        # tickets (pgt, pgtId, pgtIou) log their holder in; SAML messages and
        # artifacts (HTTP-Redirect, HTTP-POST and artifact bindings) carry
        # or fetch a signed assertion.
        "ticket", "pgt", "pgtid", "pgtiou", "samlresponse", "samlrequest", "samlart",
        # GitLab's private tokens
        "private_token",
    }
)  # fmt: skip

# The word rules (``secret_name``).  Why words: APIs build names from these
# words in every style (user_password, login.password, userPassword,
# private_token, X-Auth-Token), and no list of whole names keeps up.
#
# Stems: secret wherever they occur in the name with its separators removed
# (so "accesstoken" and "access_token" alike).  Each is long or odd enough
# not to occur inside ordinary words; "secretary" is the one known
# casualty.  "pass", "otp" and "key" are not stems: "passenger", "footprint"
# and "monkey".
SECRET_STEMS: tuple[str, ...] = (
    "password", "passwd", "passphrase", "passcode", "pwd", "secret", "token", "apikey", "accesskey",
    "privatekey", "authkey", "authcode", "sessionid", "sessid", "saml", "jwt", "bearer",
)  # fmt: skip
# Words secret wherever they stand in the name ("db_pass", "otp_code", "cvv2").
SECRET_WORDS: frozenset[str] = frozenset({"pass", "otp", "totp", "hotp", "cvv", "cvc"})
# Secret as the name's last word (English puts the head noun last: an
# "api_key" is a key, a "key_id" is an id).  Numbers are not words
# ("api_key_2" ends in "key").  Over-redacted by this choice: "sort_key",
# "cache_key", "idempotency_key", "public_key" (a token keeps equality, so
# nothing is lost for correlation).
SECRET_LAST_WORDS: frozenset[str] = frozenset(
    {
        "key", "keys", "auth", "authorization", "session", "sid", "sig", "signature",
        "ticket", "tickets", "assertion", "verifier",
    }
)  # fmt: skip
# Codes that log their holder in (OAuth's device flow, e-mailed and
# one-time codes, card security codes).  A code of any other kind is not
# secret ("country_code", "error_code", "zip_code").
SECRET_LAST_PHRASES: frozenset[tuple[str, str]] = frozenset(
    {
        ("auth", "code"), ("authorization", "code"), ("device", "code"), ("verification", "code"),
        ("security", "code"), ("recovery", "code"), ("mfa", "code"), ("access", "code"),
    }
)  # fmt: skip

# Bound of every memo (names, query shapes, header names): sites send a few
# hundred distinct names; a flood of fresh names costs a recomputation each,
# never unbounded memory.
_MEMO_MAX = 4096

# The memo of URL header values (``Redactor._url``): at most 1024 values of
# at most 256 characters, about 0.5 MB at worst.
_URL_MEMO_MAX = 1024
_URL_MEMO_CHARS = 256


class _Pattern:
    """A module pattern compiled at its first use, not at import: most runs
    redact a few headers and never see a cookie, a form or an XML body, and
    compiling all the patterns below cost ~9 M instructions of every
    `sniffd read`'s start-up.  The first attribute looked up (``.match``,
    ``.sub``, ...) compiles it and puts the ``re.Pattern`` in the module's
    globals in its place, so every later use is the plain compiled pattern."""

    __slots__ = ("name", "args")

    def __init__(self, name: str, *args) -> None:
        self.name, self.args = name, args

    def __getattr__(self, attr: str):
        compiled = re.compile(*self.args)
        globals()[self.name] = compiled
        return getattr(compiled, attr)


_WS = " \t"
_NONWORD = _Pattern("_NONWORD", r"[^a-z0-9]+")
# Words of a name: runs of capitals (an acronym, up to the capital that starts
# the next word: "SAMLResponse" -> SAML, Response), capitalised or lowercase
# words, numbers.  Everything else (_ - . [ ] and the rest) separates.
_WORD = _Pattern("_WORD", r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# A comma in a joined Set-Cookie value starts a new cookie where "name="
# follows (the name being anything up to "=" but ";" and ",": PHP's
# "user[sid]=" is no RFC 6265 token, but browsers take it).  Expires dates
# contain a comma, but in every HTTP-date format that has one (RFC 9110
# section 5.6.7: "Wed, 21 Oct 2026 07:28:00 GMT", "Wednesday, 21-Oct-26
# 07:28:00 GMT") what follows it is the day number and a space, never "=".
_COOKIE_AHEAD = _Pattern("_COOKIE_AHEAD", r"[ \t]*[^=;,]+=")
_EXPIRES_DAY = _Pattern("_EXPIRES_DAY", r"[ \t]*expires[ \t]*=[ \t]*[A-Za-z]+[ \t]*", re.IGNORECASE)
_AUTH = _Pattern("_AUTH", r"([ \t]*\S+)([ \t]+)(.*)", re.DOTALL)
_ABSOLUTE = _Pattern("_ABSOLUTE", r"([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#]*)")
_AUTHORITY_END = _Pattern("_AUTHORITY_END", r"[/?#]|$")
# The name of a query, fragment or form parameter: at the start or after a
# "&" or ";" separator, up to "=" (the name may be empty; a piece without
# "=" has no value to hide).
_NAME_S = _Pattern("_NAME_S", r"(?:^|(?<=[&;]))([^&;=]*)=")
_NAME_B = _Pattern("_NAME_B", rb"(?:^|(?<=[&;]))([^&;=]*)=")
# A path parameter's name: after ";", up to "=" (RFC 3986 section 3.3).
_PATH_PARAM = _Pattern("_PATH_PARAM", r";([^;/=]*)=")
_BRACKETS = _Pattern("_BRACKETS", r"\[([^\]]*)\]")
# A JSON string, escapes included (RFC 8259 section 7).
_JSON_STRING = _Pattern("_JSON_STRING", r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_JSON_DECODER = _json.JSONDecoder()
# Refresh: "<delay>[;,] [url=]['"]<url>['"]" (the HTML standard's "shared
# declarative refresh steps": the separator, URL= and the quotes are optional).
_REFRESH = _Pattern("_REFRESH", r"""([ \t]*[0-9.]*[ \t]*[;,]?[ \t]*(?:url[ \t]*=[ \t]*)?['"]?)(.*?)(['"]?[ \t]*)""", re.IGNORECASE | re.DOTALL)
_LINK_URL = _Pattern("_LINK_URL", r"<([^>]*)>")
# Sec-WebSocket-Protocol entries that carry a bearer token: Kubernetes'
# "base64url.bearer.authorization.k8s.io.<base64url token>" and the generic
# "authorization.bearer.<token>"; AWS AppSync's "header-<base64url JSON of
# the auth headers>"; a bare JWT (RFC 7519: base64url JSON, "eyJ" = '{"').
_WS_BEARER = _Pattern("_WS_BEARER", r"((?:[^,]*?\.)?bearer\.(?:authorization\.k8s\.io\.)?)(.+)", re.IGNORECASE | re.DOTALL)
_WS_K8S = "base64url.bearer.authorization.k8s.io."
_JWT = _Pattern("_JWT", r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
# XML (bodies): a start tag, its name and attributes; the text of a leaf
# element up to its end tag (CDATA sections included); an attribute.
_XML_START = _Pattern("_XML_START", r"<([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)((?:[^<>\"']|\"[^\"]*\"|'[^']*')*)>")
_XML_TEXT = _Pattern("_XML_TEXT", r"([^<]*+(?:<!\[CDATA\[.*?\]\]>[^<]*+)*+)</([^\s>]+)\s*>", re.DOTALL)
_XML_ATTR = _Pattern("_XML_ATTR", r"""([A-Za-z_][\w.\-:]*)[ \t\r\n]*=[ \t\r\n]*("[^"]*"|'[^']*')""")
# The last attribute of a start tag cut short, its value unterminated.
_XML_CUT_ATTR = _Pattern("_XML_CUT_ATTR", r"""([A-Za-z_][\w.\-:]*)[ \t\r\n]*=[ \t\r\n]*["']([^"']+)$""")
_XML_CDATA = _Pattern("_XML_CDATA", r"<!\[CDATA\[(.*?)\]\]>", re.DOTALL)
_XML_REF = _Pattern("_XML_REF", r"&(#[0-9]+|#x[0-9A-Fa-f]+|amp|lt|gt|quot|apos);")
_XML_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
# SAML assertions (OASIS SAML 2.0 core section 2.3.3) are bearer credentials:
# the whole element is tokenised, signature and all.
_XML_WHOLE = frozenset({"assertion", "encryptedassertion"})


def _norm(name: str) -> str:
    """The form a parameter or JSON key name is compared in: lowercase, without
    "-" and "_", so the spellings APIs use for one name (``access_token``,
    ``accessToken``, ``access-token``) all match."""
    return name.lower().replace("-", "").replace("_", "")


def name_words(name: str) -> list[str]:
    """The words of a name, lowercase, numbers left out:
    ``"X-Api-Key"`` -> ``["x", "api", "key"]``, ``"userPassword[0]"`` ->
    ``["user", "password"]``, ``"SAMLResponse"`` -> ``["saml", "response"]``."""
    return [w.lower() for w in _WORD.findall(name) if not w.isdigit()]


def secret_by_words(name: str) -> bool:
    """Whether ``name`` is secret by the word rules (module docstring)."""
    flat = _NONWORD.sub("", name.lower())
    for stem in SECRET_STEMS:
        if stem in flat:
            return True
    words = name_words(name)
    if not words:
        return False
    return (
        not SECRET_WORDS.isdisjoint(words)
        or words[-1] in SECRET_LAST_WORDS
        or (len(words) > 1 and (words[-2], words[-1]) in SECRET_LAST_PHRASES)
    )


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


def _xml_ref(m: re.Match) -> str:
    ref = m.group(1)
    if ref[0] != "#":
        return _XML_ENTITIES[ref]
    try:
        return chr(int(ref[2:], 16) if ref[1] in "xX" else int(ref[1:]))
    except (ValueError, OverflowError):
        return m.group()


def _xml_unescape(text: str) -> str:
    """XML character data as the application reads it (XML 1.0 sections
    2.4, 2.7, 4.6): CDATA sections as they are, references resolved."""
    out, last = [], 0
    for m in _XML_CDATA.finditer(text):
        out.append(_XML_REF.sub(_xml_ref, text[last : m.start()]))
        out.append(m.group(1))
        last = m.end()
    out.append(_XML_REF.sub(_xml_ref, text[last:]))
    return "".join(out)


def _b64url(text: str) -> bytes | None:
    """The bytes of unpadded base64url text, None when it is not that."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


class Redactor:
    """Replaces credentials in headers, URIs and bodies by keyed-hash tokens.

    ``key``: the HMAC key, at least ``MIN_KEY_BYTES`` bytes; secret and
    stable (see the module docstring).  ``headers``: header names to redact
    (any case).  ``params``: query/form/JSON parameter names to redact (any
    case, "-" and "_" ignored).  Both are the whole set of *names*: pass
    ``DEFAULT_HEADERS | extra`` to add to the defaults.  ``match_words``:
    also treat as secret any header or parameter name that the word rules
    call secret (``secret_by_words``); with False, only the listed names are.

    The sets are kept as ``header_names`` and ``params`` (``headers`` is
    the method).  Bad configuration raises ``ValueError`` here, naming the
    argument.
    """

    def __init__(
        self,
        key: bytes,
        headers: frozenset[str] = DEFAULT_HEADERS,
        params: frozenset[str] = DEFAULT_PARAMS,
        match_words: bool = True,
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
        self.match_words = bool(match_words)
        self._params_norm = frozenset(_norm(p) for p in params)
        self._mac = hmac.new(bytes(key), digestmod=hashlib.sha256)
        # (raw parameter name, keys) -> secret?  (``_param_is_secret``)
        self._memo: dict[tuple[bytes, frozenset[str]], bool] = {}
        # (decoded name, keys) -> secret?  (JSON member and XML names)
        self._names: dict[tuple[str, frozenset[str]], bool] = {}
        # Query shapes (the tuple of parameter names) -> does any name match?
        self._shapes: dict[tuple[str, ...], bool] = {}
        # Header name -> its rule (a method) or None; and the lowercase names
        # known to have none, for the one-call test of a whole header section.
        self._header_rules: dict[str, Any] = {}
        self._plain_headers: set[str] = set()
        # URL header value -> its redacted form, None when it has no secret.
        self._url_memo: dict[str, str | None] = {}
        self._rules = {
            "authorization": self._authorization,
            "cookie": self._cookie,
            "set_cookie": self._set_cookie,
            "url": self._url,
            "refresh": self._refresh,
            "link": self._link,
            "websocket_protocol": self._websocket_protocol,
            "authority": self.authority,
            "whole": self._whole,
        }
        # Rules that change only what is secret inside the value: the header
        # is listed only when they changed something.
        self._partial = {self._rules[r] for r in ("url", "refresh", "link", "websocket_protocol", "authority")}

    # ------------------------------------------------------------ tokens

    def token(self, secret: bytes) -> str:
        """``"hmac:"`` + first 16 hex digits of HMAC-SHA256(key, secret)."""
        mac = self._mac.copy()
        mac.update(secret)
        return TOKEN_PREFIX + mac.hexdigest()[:16]

    def _tok(self, text: str) -> str:
        return self.token(_to_bytes(text))

    # ------------------------------------------------------------ names

    def secret_name(self, name: str, keys: frozenset[str] | None = None) -> bool:
        """Whether a decoded parameter, JSON member, XML or header name is
        secret: its ``_norm`` form, or that of its part before "[" or of one
        of its bracketed parts, is in ``keys`` (default: the normalised
        ``params``); or, when ``keys`` is the redactor's own and
        ``match_words`` is on, by the word rules (``secret_by_words``).
        Remembered per (name, keys), bounded."""
        keys = self._params_norm if keys is None else keys
        memo = self._names
        hit = memo.get((name, keys))
        if hit is None:
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            hit = memo[(name, keys)] = self._secret_name_uncached(name, keys)
        return hit

    def _secret_name_uncached(self, name: str, keys: frozenset[str]) -> bool:
        if _norm(name) in keys:
            return True
        if "[" in name:
            base = name.split("[", 1)[0]
            if _norm(base) in keys or any(_norm(part) in keys for part in _BRACKETS.findall(name)):
                return True
        return keys is self._params_norm and self.match_words and secret_by_words(name)

    def _param_is_secret(self, raw_name: bytes, keys: frozenset[str]) -> bool:
        """``raw_name`` as sent (percent-encoded, "+" for space), decoded and
        asked of ``secret_name``.

        Answers are remembered per (name, list): parameter names repeat on
        every request of a site, and this runs for each one of each record
        (profiling showed ~13 us per URI before).  The memo is bounded."""
        memo = self._memo
        hit = memo.get((raw_name, keys))
        if hit is not None:
            return hit
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8", "replace")
        hit = memo[(raw_name, keys)] = self._secret_name_uncached(name, keys)
        return hit

    # ------------------------------------------------------------ headers

    def _header_rule(self, lname: str):
        """The rule (a method) for the lowercase header name ``lname``, None
        for a header kept as sent:

        1. a configured name: its ``HEADER_RULES`` rule; else the
           Authorization rule when its last word is "authorization"
           (X-Forwarded-Authorization), else tokenised whole;
        2. with ``match_words``, a name outside ``NOT_SECRET_HEADERS`` that is
           secret by the word rules: the same (X-Vault-Token whole);
        3. with ``match_words``, a name whose last word is in
           ``URL_HEADER_WORDS``: its URL redacted (``uri``).
        """
        rule = None
        if lname in self.header_names:
            rule = HEADER_RULES.get(lname)
            if rule is None:
                words = name_words(lname)
                rule = "authorization" if words and words[-1] == "authorization" else "whole"
        elif self.match_words and lname not in NOT_SECRET_HEADERS:
            words = name_words(lname)
            if secret_by_words(lname):
                rule = "authorization" if words[-1] == "authorization" else "whole"
            elif words and words[-1] in URL_HEADER_WORDS:
                rule = "url"
        return None if rule is None else self._rules[rule]

    def headers(self, h: dict[str, str], lowercase: bool = False) -> tuple[dict[str, str], list[str]]:
        """``h`` with secrets redacted (a copy, same keys, same order, when
        anything was), and the names of the headers that were redacted (in
        ``h``'s order).

        Which headers and how: ``_header_rule``.  A header tokenised whole or
        by the Authorization and cookie rules is listed whenever present, so
        a reader knows its value holds tokens, not what was sent; one whose
        rule redacts only what is secret inside it (URLs, WebSocket
        subprotocols) is listed when something was.  Joined repeats
        (``", "``, as the records hold them) are handled for the cookie, URL
        and WebSocket rules; for the others the joined value is one secret.

        ``lowercase`` is accepted for older callers; the decision is made per
        name either way.  The result is ``h`` itself when nothing changed:
        the caller must not mutate it.
        """
        plain = self._plain_headers
        if plain.issuperset(h):
            return h, []  # the common case: every name known to need nothing
        rules = self._header_rules
        changed: dict[str, str] = {}
        for name in h.keys() - plain:  # the names that may have a rule
            rule = rules.get(name, False)
            if rule is False:
                if len(rules) >= _MEMO_MAX:
                    rules.clear()
                    plain.clear()
                rule = rules[name] = self._header_rule(name.lower())
                if rule is None:
                    plain.add(name)
            if rule is None:
                continue
            value = h[name]
            new = rule(value)
            if new is not value or rule not in self._partial:
                changed[name] = new
        if not changed:
            return h, []
        return {k: changed.get(k, v) for k, v in h.items()}, [k for k in h if k in changed]

    def _whole(self, value: str) -> str:
        return self._tok(value) if value else value

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
        """``a=1; b=2`` (RFC 6265 section 4.2.1): names kept, each value a
        token, whatever the name (every cookie may be a session)."""
        return ";".join(self._cookie_pair(p) for p in value.split(";"))

    def _set_cookie(self, value: str) -> str:
        """``name=value; Path=/; Expires=...`` (RFC 6265 section 4.1.1): the
        value of the first pair is a token, the attributes are kept.

        Several Set-Cookie fields joined with ", " are split first:

        - inside a cookie's first pair, at a comma followed by ``name=``
          (``a=1, b=2``); a comma followed by anything else is part of the
          value (``list=a,b``), which is then one token;
        - inside the attributes, at a comma followed by ``name=``, and at any
          other comma but the one of an Expires date (``Expires=Wed, 21 Oct
          ...``): after ``HttpOnly, `` comes a new cookie, maybe a nameless
          one (``a=1; HttpOnly, SECRET``), so an attribute value with a
          comma in it loses its tail to a token rather than let a cookie
          through.
        """
        out: list[str] = []
        i, n = 0, len(value)
        while True:
            semi = value.find(";", i)
            if semi < 0:
                semi = n
            # The first pair, up to ";" or a comma that starts a new cookie.
            cut = semi
            c = value.find(",", i, semi)
            while c >= 0:
                if _COOKIE_AHEAD.match(value, c + 1, semi):
                    cut = c
                    break
                c = value.find(",", c + 1, semi)
            out.append(self._cookie_pair(value[i:cut]))
            if cut < semi:
                i = cut
            else:
                if semi == n:
                    break
                # The attributes, up to the comma that starts a new cookie.
                i = n
                c = value.find(",", semi)
                while c >= 0:
                    attr = value[value.rfind(";", semi, c) + 1 : c]
                    if _COOKIE_AHEAD.match(value, c + 1) or not _EXPIRES_DAY.fullmatch(attr):
                        i = c
                        break
                    c = value.find(",", c + 1)
                out.append(value[semi:i])
                if i == n:
                    break
            # The separator: the comma and the whitespace after it.
            j = i + 1
            while j < n and value[j] in _WS:
                j += 1
            out.append(value[i:j])
            i = j
        return "".join(out)

    def _url(self, value: str) -> str:
        """A header holding one URL (Referer, Location, Content-Location):
        redacted as a request target (``uri``).  Joined repeats are one URL
        to ``uri``, whose rules do not depend on where the URL ends.

        A page's subresources all carry its URL as Referer: short values are
        remembered (bounded: ``_URL_MEMO_MAX`` values of at most
        ``_URL_MEMO_CHARS`` characters), so a Referer costs a dict lookup."""
        if len(value) > _URL_MEMO_CHARS:
            return self.uri(value)[0]
        memo = self._url_memo
        hit = memo.get(value, False)
        if hit is False:
            if len(memo) >= _URL_MEMO_MAX:
                memo.clear()
            new, changed = self.uri(value)
            hit = memo[value] = new if changed else None
        return value if hit is None else hit

    def _refresh(self, value: str) -> str:
        """``Refresh: 0; url=https://...`` (a de-facto header that browsers
        follow like a redirect): the URL after the delay, redacted as a
        request target."""
        m = _REFRESH.fullmatch(value)
        if m is None or not m.group(2):
            return value
        url, changed = self.uri(m.group(2))
        return m.group(1) + url + m.group(3) if changed else value

    def _link(self, value: str) -> str:
        """``Link: <url>; rel=next, <url>; rel=last`` (RFC 8288): each URL
        redacted as a request target, parameters kept."""
        out, last = [], 0
        for m in _LINK_URL.finditer(value):
            url, changed = self.uri(m.group(1))
            if changed:
                out += [value[last : m.start(1)], url]
                last = m.end(1)
        if not out:
            return value
        out.append(value[last:])
        return "".join(out)

    def _websocket_protocol(self, value: str) -> str:
        """``Sec-WebSocket-Protocol: a, b`` (RFC 6455 section 11.3.4), entry
        by entry:

        - ``base64url.bearer.authorization.k8s.io.<token>`` (Kubernetes):
          the prefix kept, the token (base64url of the bearer token, decoded
          so it hashes like ``Authorization: Bearer``) a token;
        - ``...bearer.<token>`` (``authorization.bearer.<jwt>``): the same;
        - ``header-<base64url>`` (AWS AppSync: the auth headers as JSON): the
          rest a token;
        - a JWT (``eyJ...``), or the entry after one named like a secret
          (``access_token, <token>``): a token whole.
        """
        entries = value.split(",")
        changed = False
        after_name = False
        for i, entry in enumerate(entries):
            core = entry.strip(_WS)
            if not core:
                continue
            lead = entry[: len(entry) - len(entry.lstrip(_WS))]
            trail = entry[len(entry.rstrip(_WS)) :]
            new = None
            m = _WS_BEARER.fullmatch(core)
            if m is not None:
                secret = m.group(2)
                raw = _b64url(secret) if m.group(1).lower().endswith(_WS_K8S) else None
                new = m.group(1) + (self.token(raw) if raw is not None else self._tok(secret))
            elif core[:7].lower() == "header-" and len(core) > 7:
                new = core[:7] + self._tok(core[7:])
            elif after_name or _JWT.fullmatch(core):
                new = self._tok(core)
            after_name = new is None and self.secret_name(core)
            if new is not None:
                entries[i] = lead + new + trail
                changed = True
        return ",".join(entries) if changed else value

    # ------------------------------------------------------------ parameters

    def _pairs(self, s, to_bytes, keys: frozenset[str]):
        """Redacts the ``name=value`` parameters in ``s`` (a query, fragment
        or form; str or bytes).  Returns ``(s', changed)``.

        Parameters are separated by "&" (WHATWG URL "application/x-www-form-
        urlencoded parsing") and also by ";" (HTML 4 appendix B.2.2; Java
        servlets, Perl CGI and Python before 3.9.2 split there too, so a
        server may see ``?a=1;password=x`` as a password).  The value of a
        secret name runs to the next "&": a secret with a raw ";" in it is
        one token, never half a secret (``?password=a;b`` hashes ``a;b``).

        Only the values of matching names change; a pair without "=" or with
        an empty value has nothing to hide and is kept.  ``s`` itself is
        returned when nothing changed, and pieces are only copied when
        something did (bodies can be large).
        """
        is_bytes = isinstance(s, (bytes, bytearray))
        pattern = _NAME_B if is_bytes else _NAME_S
        amp = b"&" if is_bytes else "&"
        out: list = []
        last = pos = 0
        n = len(s)
        while True:
            m = pattern.search(s, pos)
            if m is None:
                break
            start = pos = m.end()
            if not self._param_is_secret(to_bytes(m.group(1)), keys):
                continue
            end = s.find(amp, start)
            if end < 0:
                end = n
            pos = end
            if end == start:
                continue
            tok = self.token(unquote_to_bytes(to_bytes(s[start:end]).replace(b"+", b" ")))
            out.append(s[last:start])
            out.append(tok.encode("ascii") if is_bytes else tok)
            last = end
        if not out:
            return s, False
        out.append(s[last:])
        return (b"" if is_bytes else "").join(out), True

    def _path_params(self, path: str) -> tuple[str, bool]:
        """Path parameters (``/a;jsessionid=X/b``, RFC 3986 section 3.3,
        servlet URL rewriting): a secret name's value, to the end of its
        segment, is a token (percent-decoded first; "+" is not a space in a
        path)."""
        out: list[str] = []
        last = pos = 0
        while True:
            m = _PATH_PARAM.search(path, pos)
            if m is None:
                break
            start = pos = m.end()
            if not self._param_is_secret(_to_bytes(m.group(1)), self._params_norm):
                continue
            end = path.find("/", start)
            if end < 0:
                end = len(path)
            pos = end
            if end > start:
                out += [path[last:start], self.token(unquote_to_bytes(_to_bytes(path[start:end])))]
                last = end
        if not out:
            return path, False
        out.append(path[last:])
        return "".join(out), True

    def _userinfo(self, head: str) -> tuple[str, bool]:
        """The userinfo of the authority of ``head`` (a URI without its
        fragment), in absolute form (``http://user:pw@h/``), network-path
        form (``//user:pw@h/``) or authority form (``user:pw@h:443``, a
        CONNECT target): the password a token, or a userinfo without ":"
        tokenised whole (tokens are often sent as the user name).  RFC 9110
        sections 4.2.4 and 9.3.6 forbid sending userinfo, but proxies see
        what clients send."""
        m = _ABSOLUTE.match(head)
        if m is not None:
            start, end = m.span(2)
        elif head[:1] == "/" and head[:2] != "//":
            return head, False  # origin form: no authority
        else:
            start = 2 if head[:2] == "//" else 0
            end = _AUTHORITY_END.search(head, start).start()
        at = head.rfind("@", start, end)
        if at < 0:
            return head, False
        user, colon, password = head[start:at].partition(":")
        if colon:
            userinfo = user + ":" + (self.token(unquote_to_bytes(_to_bytes(password))) if password else "")
        else:
            userinfo = self.token(unquote_to_bytes(_to_bytes(user)))
        return head[:start] + userinfo + head[at:], True

    def uri(self, uri: str) -> tuple[str, bool]:
        """``uri`` with its secrets replaced by tokens, and whether any was.

        Everything else is kept character for character: path, parameter
        order, other parameters, their encoding.  Names are compared after
        percent-decoding.  Redacted:

        - parameters of the query (``_pairs``: "&" and ";" separate);
        - parameters in a fragment.  Clients do not send fragments, but when
          one does appear (and in Location, Referer) it is as likely to hold
          an OAuth implicit-grant ``#access_token=`` (RFC 6749 section
          4.2.2) as anything else;
        - path parameters (``_path_params``: ``;jsessionid=``);
        - the userinfo's password (``_userinfo``), the CONNECT target's too.
        """
        if "#" not in uri and "@" not in uri:
            q = uri.find("?")
            if q < 0:
                if ";" not in uri:
                    return uri, False  # nothing that can hold a secret
            elif uri.find(";", 0, q) < 0:
                # A path and a query, the common URI.  Only a secret name
                # can make a value secret, and sites send the same names on
                # every request: whether a shape of names holds one is looked
                # up once (bounded memo), and most queries are returned unread.
                names = tuple(_NAME_S.findall(uri[q + 1 :]))
                shapes = self._shapes
                hit = shapes.get(names)
                if hit is None:
                    if len(shapes) >= _MEMO_MAX:
                        shapes.clear()
                    keys = self._params_norm
                    hit = shapes[names] = any(self._param_is_secret(_to_bytes(n), keys) for n in names)
                if not hit:
                    return uri, False
        head, hash_, fragment = uri.partition("#")
        changed = False
        if "@" in head:
            head, changed = self._userinfo(head)
        path, q, query = head.partition("?")
        if ";" in path:
            path, c = self._path_params(path)
            changed |= c
        if q:
            query, c = self._pairs(query, _to_bytes, self._params_norm)
            changed |= c
        if hash_:
            fragment, c = self._pairs(fragment, _to_bytes, self._params_norm)
            changed |= c
        if not changed:
            return uri, False
        return path + q + query + hash_ + fragment, True

    def authority(self, value: str) -> str:
        """An authority (``host:port``, HTTP/2's ``:authority``, RFC 3986
        section 3.2) with its userinfo redacted as a URL's is
        (``user:hmac:…@host``; a userinfo without ":" one token)."""
        return self._userinfo(value)[0] if "@" in value else value

    def connect_target(self, target: str | None) -> str | None:
        """A CONNECT request's target (``records``' ``connect_tunnel.target``)
        with the userinfo's password redacted (``user:pw@host:443``)."""
        return self.uri(target)[0] if target else target

    def start_line(self, line: str | None) -> str | None:
        """A start line kept raw because it could not be parsed
        (``http_parse_error``): every whitespace-separated word that could be
        a URL (holds "?", "#", ";" or "@") redacted as one (``uri``)."""
        if not line:
            return line
        words = re.split(r"([ \t]+)", line)
        changed = False
        for i in range(0, len(words), 2):
            w = words[i]
            if any(c in w for c in "?#;@"):
                words[i], c = self.uri(w)
                changed |= c
        return "".join(words) if changed else line

    def form(self, body: bytes) -> bytes:
        """An ``application/x-www-form-urlencoded`` body with the secret
        fields' values replaced by tokens (``_pairs``); all other bytes kept.
        The result is ``body`` itself when nothing was redacted."""
        return self._pairs(body, bytes, self._params_norm)[0]

    # ------------------------------------------------------------ JSON

    def _keys(self, keys) -> frozenset[str]:
        """The normalised names for ``keys``; the redactor's own set (the
        word rules apply) for None or ``params`` itself."""
        if keys is None or keys is self.params:
            return self._params_norm
        norm = frozenset(_norm(k) for k in keys)
        return self._params_norm if norm == self._params_norm else norm

    def _json_token(self, value: Any) -> str:
        """A string is hashed as its own UTF-8 bytes (so it matches the same
        secret sent in a header or a query); any other value as its compact
        JSON serialisation."""
        if isinstance(value, str):
            return self._tok(value)
        return self._tok(_json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    def json(self, obj: Any, keys: frozenset[str] | None = None) -> Any:
        """A copy of a parsed JSON value in which every object member with a
        secret name (``secret_name``; ``keys`` instead of ``params`` when
        given; any depth, inside arrays too) has its value, whatever its
        type, replaced by its token string.  Iterative, so nesting depth
        cannot exhaust the stack."""
        keys = self._keys(keys)

        def copy(v: Any) -> Any:
            return {} if isinstance(v, dict) else [] if isinstance(v, list) else v

        root = copy(obj)
        stack = [(obj, root)] if isinstance(obj, (dict, list)) else []
        while stack:
            src, dst = stack.pop()
            items = src.items() if isinstance(src, dict) else enumerate(src)
            for k, v in items:
                if isinstance(src, dict) and isinstance(k, str) and self.secret_name(k, keys):
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
        """JSON text with the values of members with a secret name
        (``secret_name``; ``keys`` instead of ``params`` when given; any
        depth) replaced by ``"<token>"``, and whether any was.

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
            if v >= n or not self.secret_name(name, keys):
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

    # ------------------------------------------------------------ XML

    def xml_text(self, text: str) -> tuple[str, bool]:
        """XML text (a SOAP envelope, an API response) with its secrets
        replaced by tokens, and whether any was:

        - the text of a leaf element whose local name (the name without its
          namespace prefix) is secret (``secret_name``): WS-Security's
          ``<wsse:Password Type="...#PasswordText">`` (OASIS WSS
          UsernameToken Profile 1.1 section 3.1) under any prefix,
          ``<BinarySecurityToken>``, AWS STS's ``<SecretAccessKey>`` and
          ``<SessionToken>``.  Surrounding whitespace is kept; the token
          hashes the text as the application reads it (references resolved,
          CDATA unwrapped);
        - the value of an attribute with a secret name (``password="..."``),
          inside its quotes, references resolved;
        - a SAML ``<Assertion>`` or ``<EncryptedAssertion>`` element, whole
          content: a signed assertion is a bearer credential.  When its end
          tag is missing (a body cut by a cap), to the end of the text.

        Works on the text with a tolerant scan, not a parser, so a body cut
        short or not well-formed is still redacted.  The result is ``text``
        itself when nothing was.
        """
        out: list[str] = []
        last = pos = 0
        n = len(text)
        while True:
            m = _XML_START.search(text, pos)
            if m is None:
                break
            pos = m.end()
            name, attrs = m.group(1), m.group(2)
            if "=" in attrs:
                last = self._xml_attrs(text, m.start(2), m.end(2), out, last)
            if attrs.endswith("/"):
                continue  # an empty element
            local = name.rpartition(":")[2]
            if local.lower() in _XML_WHOLE:
                end = text.find("</" + name, pos)
                end = n if end < 0 else end
                if end > pos:
                    out += [text[last:pos], self._tok(text[pos:end])]
                    last = end
                pos = end
                continue
            if not self.secret_name(local):
                continue
            t = _XML_TEXT.match(text, pos)
            if t is not None:
                if t.group(2) != name:
                    continue  # not a leaf
                content, after = t.group(1), t.end()
            elif "<" not in text[pos:]:
                content = after = None  # cut short inside the secret: to the end
            else:
                continue  # not a leaf
            if content is None:
                content, after = text[pos:], n
            core = content.strip(" \t\r\n")
            if core:
                s = pos + (len(content) - len(content.lstrip(" \t\r\n")))
                out += [text[last:s], self._tok(_xml_unescape(core))]
                last = s + len(core)
            pos = after
        # A start tag cut short by a cap: a secret attribute's value runs to
        # the end of the text.
        lt = text.rfind("<", last)
        if lt >= 0 and ">" not in text[lt:]:
            last = self._xml_attrs(text, lt, n, out, last)
            m = _XML_CUT_ATTR.search(text, max(lt, last))
            if m is not None and self._xml_attr_secret(m.group(1)):
                out += [text[last : m.start(2)], self._tok(_xml_unescape(m.group(2)))]
                last = n
        if not out:
            return text, False
        out.append(text[last:])
        return "".join(out), True

    def _xml_attr_secret(self, name: str) -> bool:
        return not name.startswith("xmlns") and self.secret_name(name.rpartition(":")[2])

    def _xml_attrs(self, text: str, start: int, end: int, out: list[str], last: int) -> int:
        """Tokenises the values of the secret attributes in text[start:end]
        into ``out``; returns the new ``last`` (end of what ``out`` holds)."""
        for a in _XML_ATTR.finditer(text, start, end):
            if not self._xml_attr_secret(a.group(1)):
                continue
            vs, ve = a.start(2) + 1, a.end(2) - 1
            if ve > vs:
                out += [text[last:vs], self._tok(_xml_unescape(text[vs:ve]))]
                last = ve
        return last
