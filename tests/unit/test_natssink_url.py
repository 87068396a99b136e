"""The NATS output's URL (sniffd.natssink.parse_url): what each form means,
and what is refused with which reason.  Expected values written by hand."""

from __future__ import annotations

import pytest

from sniffd.natssink import NatsTarget, NatsUrlError, parse_url, shown_url

GOOD = [
    ("nats://127.0.0.1:4222/sniffd.http", NatsTarget("127.0.0.1", 4222, "sniffd.http")),
    ("nats://nats1.example/sniffd", NatsTarget("nats1.example", 4222, "sniffd")),  # NATS's port by default
    ("nats://shipper:s3cret@nats1.example:4223/a.b.c", NatsTarget("nats1.example", 4223, "a.b.c", "shipper", "s3cret")),
    # percent-encoded '@', ':' and '/' in a password
    ("nats://shipper:p%40ss%3Aw%2Frd@h:1/s", NatsTarget("h", 1, "s", "shipper", "p@ss:w/rd")),
    ("nats://T0KEN@h:1/s", NatsTarget("h", 1, "s", token="T0KEN")),  # a user without a password is a token
    ("nats://[2001:db8::1]:4222/s", NatsTarget("2001:db8::1", 4222, "s")),
    ("NATS://h:1/s", NatsTarget("h", 1, "s")),
]

BAD = [
    ("nats://h:1/", "no subject (nats://HOST:PORT/SUBJECT)"),
    ("nats://h:1", "no subject (nats://HOST:PORT/SUBJECT)"),
    ("nats://:1/s", "no host (nats://HOST:PORT/SUBJECT)"),
    ("nats://h:0/s", "port 0 is not a server's port"),
    ("nats://h:65536/s", "not a nats:// URL (Port out of range 0-65535)"),
    ("nats://h:x/s", "not a nats:// URL (Port could not be cast to integer value as 'x')"),
    ("nats://h/a.*", "the subject must not hold wildcards (* or >): records are published to one subject, got 'a.*'"),
    ("nats://h/a.>", "the subject must not hold wildcards (* or >): records are published to one subject, got 'a.>'"),
    ("nats://h/a..b", "the subject's dot-separated tokens must not be empty, got 'a..b'"),
    ("nats://h/a/b", "the subject must not hold '/', got 'a/b'"),
    ("nats://h/a b", "the subject must not hold white space or control characters, got 'a b'"),
    ("nats://h/s?x=1", "no ?query or #fragment: the subject is the path (nats://HOST:PORT/SUBJECT)"),
    ("tls://h/s", "the scheme must be nats://, got tls://"),
]


@pytest.mark.parametrize("url,expected", GOOD, ids=[g[0] for g in GOOD])
def test_nats_url_forms(url, expected):
    assert expected == parse_url(url)


@pytest.mark.parametrize("url,problem", BAD, ids=[b[0] for b in BAD])
def test_bad_nats_url_says_what_is_wrong(url, problem):
    with pytest.raises(NatsUrlError) as e:
        parse_url(url)
    assert problem == str(e.value)


def test_credentials_are_never_shown():
    assert "nats://h:1/s" == shown_url("nats://shipper:s3cret@h:1/s")
    assert "nats://h:1/s" == shown_url("nats://T0KEN@h:1/s")
    assert "nats://h:1/s" == parse_url("nats://shipper:s3cret@h:1/s").shown
    assert "nats://[2001:db8::1]:4222/s" == parse_url("nats://[2001:db8::1]/s").shown
