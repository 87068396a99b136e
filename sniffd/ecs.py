"""ECS output (pure): a native record -> one Elastic Common Schema document,
and that document -> one line of JSON (``[output] format = "ecs"``,
``sniffd read --format ecs``).

Filebeat's filestream input (ndjson parser) or Elastic Agent ships the lines
as they are: every field sniffd has an ECS name for is written under that
name, with the type ECS gives it (README, "ECS output", has the table; the
types are those of ECS 8.x, checked by tests/pcap/test_ecs_output.py), and
everything else under ``sniffd``, the custom field set ECS recommends for
what it has no name for, so nothing of the native record is lost: the
native record can be made again from the document (the tests do).

The transform runs only when the format is ``ecs``, on the record dict the
pipeline made, just before it is written; the default format never imports
this module.  Text from the wire is escaped exactly as in the native record
(``records.wire_text``): a document whose strings need it is made again from
``records._escaped_record(record)``, the one place that knows which fields
come from the wire.

Shape of a document (null values are left out, as ECS producers do; an
``http.request`` or ``http.response`` only when the record has one)::

    @timestamp, ecs.version, event{kind, category, type, module, dataset,
    start, end, duration}, observer{hostname, product, type, ingress},
    network{transport, iana_number, type, protocol, community_id, vlan,
    inner, bytes}, source{ip, port, bytes}, destination{...}, url{...},
    http{...}, user_agent{original}, tls{...}, related{ip, hosts},
    sniffd{uid, ... the native fields ECS has no name for}
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import orjson

from sniffd import records

# The ECS release whose field reference the mapping follows.  Every field
# written here has the same name and type from ECS 8.6 to 8.12 (the TLS,
# HTTP, network and observer field sets did not change between them).
ECS_VERSION = "8.11.0"

# Top-level native fields the document carries under ECS names; every
# other top-level field (uid, trans_depth, end_reason, anomalies, tunnel,
# connect_tunnel, the HTTP/2 fields, and any field added later) goes to
# ``sniffd`` under its native name.
_MAPPED = frozenset(("kind", "ts", "client", "server", "vlan", "request", "response", "tls", "duration_ms",
                     "community_id", "sensor", "interface"))
# Fields of request / response / tls / tls.server_cert with an ECS name; the
# others stay in sniffd.request / sniffd.response / sniffd.tls /
# sniffd.tls.server_cert.  request.host stays too, as sent: url.domain and
# url.port are made from it, and drop what they cannot hold (a userinfo).
_REQUEST_MAPPED = frozenset(("method", "uri", "version", "body_len"))
_RESPONSE_MAPPED = frozenset(("status", "body_len"))
_TLS_MAPPED = frozenset(("cipher", "sni", "alpn", "resumed", "established", "ja3", "ja3s", "server_cert",
                         "client_bytes", "server_bytes"))
_CERT_MAPPED = frozenset(("subject", "issuer", "serial", "not_before", "not_after", "dns_names", "sha256"))

# tls.version -> (tls.version_protocol, tls.version): ECS splits
# "TLSv1.2" into the lower-case protocol and the number.  A version with no
# name ("0x7f1c") has no ECS form: it stays in sniffd.tls.version.
TLS_VERSIONS = {"SSLv2": ("ssl", "2.0"), "SSLv3": ("ssl", "3.0"), "TLSv1.0": ("tls", "1.0"),
                "TLSv1.1": ("tls", "1.1"), "TLSv1.2": ("tls", "1.2"), "TLSv1.3": ("tls", "1.3")}

# event.category / event.type per record kind, from ECS's allowed values:
# an HTTP transaction is network and web activity, an access (allowed for
# both categories) seen at the protocol level (network); a TLS record is a
# network connection whose protocol was read.
_EVENT = {
    "http": (("network", "web"), ("access", "protocol")),
    "tls": (("network",), ("connection", "protocol")),
}


def _plus(ts: str, ns: int) -> str:
    """``ts`` (records.rfc3339: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``) plus ``ns``
    nanoseconds, in the same form (microseconds: the records' precision)."""
    us = int(ts[20:26]) + (ns + 500) // 1000
    if us < 1_000_000:
        return f"{ts[:20]}{us:06d}Z"  # the common case: the same second
    end = datetime.fromisoformat(ts[:19]) + timedelta(microseconds=us)
    return end.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _authority(text: str, url: dict) -> None:
    """url.domain and url.port from an authority (``host``, ``host:port``,
    ``[v6]:port``, with a userinfo before ``@`` dropped).  ECS keeps the
    brackets of an IPv6 literal in url.domain.  A port that is not a
    number up to 65535 is left in the domain: the text stays as sent."""
    host = text.rpartition("@")[2]
    port = ""
    if host.startswith("["):
        end = host.find("]")
        if end != -1 and host[end + 1 : end + 2] == ":":
            host, port = host[: end + 1], host[end + 2 :]
    else:
        name, sep, digits = host.rpartition(":")
        if sep and ":" not in name:
            host, port = name, digits
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        host, port = text.rpartition("@")[2], ""
    if host:
        url["domain"] = host
    if port:
        url["port"] = int(port)


# An absolute-form target begins with a scheme (RFC 3986 section 3.1) and "://".
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _url(uri: str | None, host: str | None) -> dict:
    """ECS url.* of a request: ``original`` the target as sent (and
    redacted); ``path`` and ``query`` split at the first ``?`` of an
    origin-form or absolute-form target; ``scheme``, ``domain`` and
    ``port`` from an absolute-form or authority-form (CONNECT) target, else
    from the Host (HTTP/2: ``:authority``), which RFC 9112 section 3.2.2
    says the absolute form overrides."""
    url: dict = {}
    authority = host
    if uri is not None:
        url["original"] = uri
        rest = None
        if uri.startswith("/"):
            rest = uri
        elif _SCHEME.match(uri):
            scheme, _, after = uri.partition("://")
            url["scheme"] = scheme.lower()
            cut = min((i for i in (after.find("/"), after.find("?")) if i != -1), default=len(after))
            authority, rest = after[:cut], after[cut:]
        elif uri != "*":
            authority = uri  # CONNECT host:port (RFC 9110 section 9.3.6)
        if rest:
            path, sep, query = rest.partition("?")
            if path:
                url["path"] = path
            if sep:
                url["query"] = query
    if authority:
        _authority(authority, url)
    return url


def _rest(d: dict, mapped: frozenset) -> dict:
    return {k: v for k, v in d.items() if k not in mapped}


def to_ecs(rec: dict) -> dict:
    """The ECS document of one native record (either kind); pure."""
    kind = rec["kind"]
    ts = rec["ts"]
    client, server = rec["client"], rec["server"]
    category, types = _EVENT.get(kind, (("network",), ("info",)))
    event = {"kind": "event", "category": list(category), "type": list(types), "module": "sniffd",
             "dataset": "sniffd." + kind, "start": ts}
    duration = rec.get("duration_ms")
    if duration is not None:
        # duration_ms has 3 decimals: a whole number of microseconds.
        ns = round(duration * 1_000_000)
        event["end"] = _plus(ts, ns)
        event["duration"] = ns
    observer = {"hostname": rec["sensor"], "product": "sniffd", "type": "sensor"}
    if rec.get("interface") is not None:
        observer["ingress"] = {"interface": {"name": rec["interface"]}}
    network = {"transport": "tcp", "iana_number": "6", "type": "ipv6" if ":" in client["ip"] else "ipv4",
               "protocol": kind, "community_id": rec["community_id"]}
    source = {"ip": client["ip"], "port": client["port"]}
    destination = {"ip": server["ip"], "port": server["port"]}
    doc = {"@timestamp": ts, "ecs": {"version": ECS_VERSION}, "event": event, "observer": observer,
           "network": network, "source": source, "destination": destination}
    sniffd = {k: v for k, v in rec.items() if k not in _MAPPED}

    vlans = rec.get("vlan")
    if vlans:
        # ECS: the outer tag in network.vlan, the next in network.inner.vlan
        # (keyword ids); a deeper stack is kept whole in sniffd.vlan.
        network["vlan"] = {"id": str(vlans[0])}
        if len(vlans) > 1:
            network["inner"] = {"vlan": {"id": str(vlans[1])}}
        if len(vlans) > 2:
            sniffd["vlan"] = vlans

    hosts: list[str] = []
    if kind == "tls":
        _tls(rec["tls"], doc, sniffd, hosts)
    elif kind == "http":
        _http(rec, doc, sniffd, hosts)
    else:  # a kind this module does not know yet: its fields kept whole
        sniffd.update((k, rec[k]) for k in ("request", "response", "tls") if k in rec)

    ips = [client["ip"]] if client["ip"] == server["ip"] else [client["ip"], server["ip"]]
    doc["related"] = {"ip": ips, "hosts": hosts} if hosts else {"ip": ips}
    doc["sniffd"] = sniffd
    return doc


def _http(rec: dict, doc: dict, sniffd: dict, hosts: list[str]) -> None:
    req, resp = rec["request"], rec["response"]
    http: dict = {}
    if req is not None:
        if req["version"] is not None:
            http["version"] = req["version"]
        hreq: dict = {"body": {"bytes": req["body_len"]}}
        if req["method"] is not None:
            hreq["method"] = req["method"]  # as sent: ECS asks for the original case
        headers = req["headers"]
        referrer = headers.get("referer")
        if referrer is not None:
            hreq["referrer"] = referrer
        http["request"] = hreq
        url = _url(req["uri"], req["host"])
        if url:
            doc["url"] = url
            if "domain" in url:
                hosts.append(url["domain"])
        agent = headers.get("user-agent")
        if agent is not None:
            doc["user_agent"] = {"original": agent}
        sniffd["request"] = _rest(req, _REQUEST_MAPPED)
    elif resp is not None and resp["version"] is not None:
        http["version"] = resp["version"]
    if resp is not None:
        hresp: dict = {"body": {"bytes": resp["body_len"]}}
        if resp["status"] is not None:
            hresp["status_code"] = resp["status"]
        http["response"] = hresp
        sniffd["response"] = _rest(resp, _RESPONSE_MAPPED)
    # Where the native record has null, so does sniffd: a record without a
    # request or response says so.
    if req is None:
        sniffd["request"] = None
    if resp is None:
        sniffd["response"] = None
    doc["http"] = http


def _tls(t: dict, doc: dict, sniffd: dict, hosts: list[str]) -> None:
    tls: dict = {}
    rest = _rest(t, _TLS_MAPPED)
    version = TLS_VERSIONS.get(t["version"])
    if version is not None:
        tls["version_protocol"], tls["version"] = version
        del rest["version"]
    if t["cipher"] is not None:
        tls["cipher"] = t["cipher"]
    client: dict = {}
    if t["sni"] is not None:
        client["server_name"] = t["sni"]
        hosts.append(t["sni"])
    if t["ja3"] is not None:
        client["ja3"] = t["ja3"]
    if client:
        tls["client"] = client
    server: dict = {}
    if t["ja3s"] is not None:
        server["ja3s"] = t["ja3s"]
    cert = t["server_cert"]
    if cert is not None:
        server["hash"] = {"sha256": cert["sha256"].upper()}  # ECS: hashes in upper case
        x509: dict = {}
        if cert["subject"] is not None:
            x509["subject"] = {"distinguished_name": cert["subject"]}
        if cert["issuer"] is not None:
            x509["issuer"] = {"distinguished_name": cert["issuer"]}
        if cert["serial"] is not None:
            x509["serial_number"] = cert["serial"]
        if cert["not_before"] is not None:
            x509["not_before"] = cert["not_before"]
        if cert["not_after"] is not None:
            x509["not_after"] = cert["not_after"]
        if cert["dns_names"]:
            x509["alternative_names"] = cert["dns_names"]
        if x509:
            server["x509"] = x509
        extra = _rest(cert, _CERT_MAPPED)
        if extra:
            rest["server_cert"] = extra
    if server:
        tls["server"] = server
    if t["alpn"] is not None:
        tls["next_protocol"] = t["alpn"]
    if t["resumed"] is not None:
        tls["resumed"] = t["resumed"]
    tls["established"] = t["established"]
    doc["tls"] = tls
    doc["source"]["bytes"] = t["client_bytes"]
    doc["destination"]["bytes"] = t["server_bytes"]
    doc["network"]["bytes"] = t["client_bytes"] + t["server_bytes"]
    sniffd["tls"] = rest


_orjson = orjson.dumps


def dumps(record: dict) -> str:
    """One native record as one line of ECS JSON (no trailing newline),
    ASCII only, escaped as ``records.dumps`` escapes the native record:
    orjson first; a document it refuses (a lone surrogate from a byte that
    was not UTF-8) or that holds a backslash is made again from the record
    with its wire text escaped (``records._escaped_record``); one with
    non-ASCII or DEL is written by the json module (``ensure_ascii``)."""
    doc = to_ecs(record)
    try:
        out = _orjson(doc)
        if b"\\" in out and b"\\\\" in out:
            raise ValueError("a backslash from the wire")
    except (orjson.JSONEncodeError, ValueError):
        doc = to_ecs(records._escaped_record(record))
        try:
            out = _orjson(doc)
        except orjson.JSONEncodeError:
            return records._encode(doc)
    if out.isascii() and b"\x7f" not in out:
        return out.decode("ascii")
    return records._encode(doc)
