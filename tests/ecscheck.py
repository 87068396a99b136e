"""ECS documents as the tests check them ([output] format = "ecs"):
``ECS_TYPES``, the ECS reference's type of every ECS field sniffd writes;
``check_types(doc)``, one line per field that is not in the table or not of
its type; ``native_from_ecs(doc)``, the native record made again from a
document by the mapping README's table gives, written here by hand (not
imported from sniffd).  Used by tests/pcap/test_ecs_output.py and
tests/live/test_ecs_gateway.py.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime

# ECS field -> (ECS type, whether ECS lets it hold an array), for every ECS
# field sniffd writes.  Taken from the ECS field reference
# (https://www.elastic.co/guide/en/ecs/current/ecs-field-reference.html),
# as generated in elastic/ecs generated/csv/fields.csv at 8.12.0-dev
# (commit 7b66579; columns Type and Normalization "array"), the TLS field
# set also checked in generated/elasticsearch/composable/component/tls.json
# of ECS 8.6.0: the types are the same across 8.x.  url.original and
# url.path are "wildcard" there: a string, as keyword is.
ECS_TYPES: dict[str, tuple[str, bool]] = {
    "@timestamp": ("date", False),
    "ecs.version": ("keyword", False),
    "event.kind": ("keyword", False),
    "event.category": ("keyword", True),
    "event.type": ("keyword", True),
    "event.module": ("keyword", False),
    "event.dataset": ("keyword", False),
    "event.start": ("date", False),
    "event.end": ("date", False),
    "event.duration": ("long", False),
    "observer.hostname": ("keyword", False),
    "observer.product": ("keyword", False),
    "observer.type": ("keyword", False),
    "observer.ingress.interface.name": ("keyword", False),
    "network.transport": ("keyword", False),
    "network.iana_number": ("keyword", False),
    "network.type": ("keyword", False),
    "network.protocol": ("keyword", False),
    "network.community_id": ("keyword", False),
    "network.vlan.id": ("keyword", False),
    "network.inner.vlan.id": ("keyword", False),
    "network.bytes": ("long", False),
    "source.ip": ("ip", False),
    "source.port": ("long", False),
    "source.bytes": ("long", False),
    "destination.ip": ("ip", False),
    "destination.port": ("long", False),
    "destination.bytes": ("long", False),
    "url.original": ("wildcard", False),
    "url.path": ("wildcard", False),
    "url.query": ("keyword", False),
    "url.scheme": ("keyword", False),
    "url.domain": ("keyword", False),
    "url.port": ("long", False),
    "http.version": ("keyword", False),
    "http.request.method": ("keyword", False),
    "http.request.referrer": ("keyword", False),
    "http.request.body.bytes": ("long", False),
    "http.response.status_code": ("long", False),
    "http.response.body.bytes": ("long", False),
    "user_agent.original": ("keyword", False),
    "tls.version": ("keyword", False),
    "tls.version_protocol": ("keyword", False),
    "tls.cipher": ("keyword", False),
    "tls.client.server_name": ("keyword", False),
    "tls.client.ja3": ("keyword", False),
    "tls.server.ja3s": ("keyword", False),
    "tls.server.hash.sha256": ("keyword", False),
    "tls.server.x509.subject.distinguished_name": ("keyword", False),
    "tls.server.x509.issuer.distinguished_name": ("keyword", False),
    "tls.server.x509.serial_number": ("keyword", False),
    "tls.server.x509.not_before": ("date", False),
    "tls.server.x509.not_after": ("date", False),
    "tls.server.x509.alternative_names": ("keyword", True),
    "tls.next_protocol": ("keyword", False),
    "tls.resumed": ("boolean", False),
    "tls.established": ("boolean", False),
    "related.ip": ("ip", True),
    "related.hosts": ("keyword", True),
}

# Elasticsearch's long: a signed 64-bit integer.
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
# RFC 3339 section 5.6 date-time, UTC (sniffd writes "Z").
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


def flatten(doc: dict, prefix: str = ""):
    """(dotted ECS name, value) of every leaf outside ``sniffd``; a list is a leaf."""
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if not prefix and k == "sniffd":
            continue
        if isinstance(v, dict):
            yield from flatten(v, name + ".")
        else:
            yield name, v


def type_problem(ecs_type: str, value) -> str | None:
    if ecs_type in ("keyword", "wildcard"):
        return None if isinstance(value, str) else "not a string"
    if ecs_type == "long":
        ok = isinstance(value, int) and not isinstance(value, bool) and LONG_MIN <= value <= LONG_MAX
        return None if ok else "not a long"
    if ecs_type == "boolean":
        return None if isinstance(value, bool) else "not a boolean"
    if ecs_type == "ip":
        try:
            ipaddress.ip_address(value)
        except (ValueError, TypeError):
            return "not an IP address"
        return None
    if ecs_type == "date":
        if not (isinstance(value, str) and RFC3339.fullmatch(value)):
            return "not RFC 3339"
        datetime.fromisoformat(value.replace("Z", "+00:00"))  # raises on 2026-13-45
        return None
    return f"unknown type {ecs_type}"


def check_types(doc: dict) -> list[str]:
    problems = []
    for name, value in flatten(doc):
        if name not in ECS_TYPES:
            problems.append(f"{name}: not an ECS field in the table")
            continue
        ecs_type, array = ECS_TYPES[name]
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not array:
            problems.append(f"{name}: an array where ECS has one value")
        for v in values:
            p = type_problem(ecs_type, v)
            if p:
                problems.append(f"{name}: {v!r}: {p} ({ecs_type})")
    return problems


# ------------------------------------------------------------ the native record made again, by hand


def native_from_ecs(doc: dict) -> dict:
    """The native record a document stands for, by the mapping README's table
    gives (written here again, not imported from sniffd)."""
    s = dict(doc["sniffd"])
    kind = doc["event"]["dataset"].removeprefix("sniffd.")
    rec = {"kind": kind, "ts": doc["@timestamp"], "uid": s.pop("uid"),
           "client": {"ip": doc["source"]["ip"], "port": doc["source"]["port"]},
           "server": {"ip": doc["destination"]["ip"], "port": doc["destination"]["port"]}}
    net = doc["network"]
    if "vlan" in s:
        rec["vlan"] = s.pop("vlan")
    elif "vlan" in net:
        rec["vlan"] = [int(net["vlan"]["id"])] + ([int(net["inner"]["vlan"]["id"])] if "inner" in net else [])
    duration = doc["event"].get("duration")
    rec["duration_ms"] = None if duration is None else round(duration / 1e6, 3)
    rec["community_id"] = net["community_id"]
    rec["sensor"] = doc["observer"]["hostname"]
    rec["interface"] = doc["observer"].get("ingress", {}).get("interface", {}).get("name")
    if kind == "http":
        http = doc["http"]
        req, resp = s.pop("request"), s.pop("response")
        if req is not None:
            req = dict(req, method=http["request"].get("method"), uri=doc.get("url", {}).get("original"),
                       version=http.get("version"), body_len=http["request"]["body"]["bytes"])
        if resp is not None:
            resp = dict(resp, status=http["response"].get("status_code"), body_len=http["response"]["body"]["bytes"])
        rec["request"], rec["response"] = req, resp
    else:
        t, tls = dict(s.pop("tls")), doc["tls"]
        cert_rest = t.pop("server_cert", {})
        client, server = tls.get("client", {}), tls.get("server", {})
        versions = {("ssl", "2.0"): "SSLv2", ("ssl", "3.0"): "SSLv3", ("tls", "1.0"): "TLSv1.0",
                    ("tls", "1.1"): "TLSv1.1", ("tls", "1.2"): "TLSv1.2", ("tls", "1.3"): "TLSv1.3"}
        if "version" in tls:
            t["version"] = versions[(tls["version_protocol"], tls["version"])]
        cert = None
        if "hash" in server:
            x = server.get("x509", {})
            cert = {"subject": x.get("subject", {}).get("distinguished_name"),
                    "issuer": x.get("issuer", {}).get("distinguished_name"),
                    "serial": x.get("serial_number"), "not_before": x.get("not_before"),
                    "not_after": x.get("not_after"), "dns_names": x.get("alternative_names", []),
                    "sha256": server["hash"]["sha256"].lower(), **cert_rest}
        t.update(cipher=tls.get("cipher"), sni=client.get("server_name"), alpn=tls.get("next_protocol"),
                 resumed=tls.get("resumed"), established=tls["established"], ja3=client.get("ja3"),
                 ja3s=server.get("ja3s"), server_cert=cert, client_bytes=doc["source"]["bytes"],
                 server_bytes=doc["destination"]["bytes"])
        rec["tls"] = t
    rec.update(s)  # trans_depth, end_reason, anomalies, tunnel, connect_tunnel, the HTTP/2 fields
    return rec


# userinfo@ (dropped), then an IPv6 literal in brackets or a name, then an
# optional port of up to five ASCII digits (RFC 3986 section 3.2: it may be empty).
AUTHORITY = re.compile(r"(?:.*@)?(\[[^\]]*\]|[^:\[\]]*)(?::([0-9]{0,5}))?", re.S)


def expected_url(req: dict) -> dict:
    """url.* of a native request: RFC 9112 section 3.2's four target forms."""
    uri, host = req["uri"], req["host"]
    url = {}
    authority = host
    if uri is not None:
        url["original"] = uri
        target = None
        if uri.startswith("/"):
            target = uri
        elif re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", uri):
            m = re.match(r"([^:]+)://([^/?]*)(.*)", uri, re.S)
            url["scheme"] = m.group(1).lower()
            authority, target = m.group(2), m.group(3)
        elif uri != "*":
            authority = uri
        if target:
            path, query = (target.split("?", 1) + [None])[:2]
            if path:
                url["path"] = path
            if query is not None:
                url["query"] = query
    if authority:
        m = AUTHORITY.fullmatch(authority)
        if m and (not m.group(2) or int(m.group(2)) <= 65535):
            if m.group(1):
                url["domain"] = m.group(1)
            if m.group(2):
                url["port"] = int(m.group(2))
        else:
            url["domain"] = authority.split("@")[-1]
    return url
