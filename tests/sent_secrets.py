"""Credentials the tests send, so the session-end scan (tests/conftest.py)
can prove none of them reached a log.  Distinctive strings: a hit cannot be
a coincidence."""

BEARER = "s3cr3t-bearer-7f1c2a9b"
BASIC_USERPASS = "alice:pa55-basic-9d2e"
COOKIE_SESSION = "sess-c00kie-41b8e7"
SET_COOKIE_SESSION = "sess-setc00kie-0a93f1"
QUERY_PASSWORD = "hunter2-query-5c7d"
FORM_PASSWORD = "hunter2-form-88a1"
JSON_TOKEN = "json-t0ken-e3f902"
PROXY_AUTH = "pr0xy-cred-1d4f"

ALL = [BEARER, BASIC_USERPASS, COOKIE_SESSION, SET_COOKIE_SESSION, QUERY_PASSWORD, FORM_PASSWORD, JSON_TOKEN,
       PROXY_AUTH]
