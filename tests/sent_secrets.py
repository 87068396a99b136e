"""Credentials the tests send, so the session-end scan (tests/conftest.py)
can prove none of them reached a log.  Distinctive strings: a hit cannot be
a coincidence.  Each is sent as written (letters, digits and "-" only, so the
wire form is the string itself) and the scan looks for it and its base64.

``SHAPES`` are the places on the wire where default redaction must find a
secret (issue 11's list, one exchange each), with the record fields sniffd
must write for them.  tests/privacy sends them in crafted captures and
tests/live over real loopback TCP; both check the fields, and the scan checks
every log the suite wrote.
"""

import base64

BEARER = "s3cr3t-bearer-7f1c2a9b"
BASIC_USERPASS = "alice:pa55-basic-9d2e"
COOKIE_SESSION = "sess-c00kie-41b8e7"
SET_COOKIE_SESSION = "sess-setc00kie-0a93f1"
QUERY_PASSWORD = "hunter2-query-5c7d"
FORM_PASSWORD = "hunter2-form-88a1"
JSON_TOKEN = "json-t0ken-e3f902"
PROXY_AUTH = "pr0xy-cred-1d4f"

# Issue 11: the shapes default redaction let through.
SET_COOKIE_PHP_SID = "php-sid-c00kie-7a1e40"
SET_COOKIE_NAMELESS = "nameless-c00kie-3b9d51"
REFERER_TOKEN = "referer-t0ken-52ce07"
REFERER_PASSWORD = "referer-passw0rd-6d0f18"
LOCATION_ACCESS_TOKEN = "location-access-t0ken-8e2129"
LOCATION_CODE = "oauth-c0de-1f7b3a"
CONTENT_LOCATION_SIG = "content-location-s1g-4a4c4b"
REFRESH_CODE = "refresh-c0de-9c3a5c"
LINK_ACCESS_TOKEN = "link-access-t0ken-06d36d"
PATH_JSESSIONID = "JSESS10NID-0A1B2C3D4E"
SEMICOLON_PASSWORD = "semic0lon-passw0rd-71d27e"
USER_PASSWORD = "w0rd-user-password-a1b28f"
LOGIN_DOT_PASSWORD = "w0rd-login-password-c3d490"
PRIVATE_TOKEN = "w0rd-private-t0ken-e5f6a1"
OAUTH_TOKEN = "w0rd-oauth-t0ken-0a1bb2"
CAMEL_PASSWORD = "w0rd-camel-password-2c3dc3"
CAS_TICKET = "ST-1-c4s-ticket-0b5ed4"
SAML_REQUEST = "fZJNT8Mw-saml-request-5e6fe5"
SAML_RESPONSE = "PHNhbWxw-saml-response-7a8bf6"
X_API_KEY = "x-api-k3y-2c8d07"
X_AUTH_TOKEN = "x-auth-t0ken-5f6a18"
CONNECT_PASSWORD = "c0nnect-pa55-9e0c29"
WS_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3cy1zZWNyZXQifQ.d3Mtand0-sig-3c1a3a"
# Kubernetes sends base64url(token) as the subprotocol: the scan looks for
# both (21 bytes: base64 without padding, and without "+" or "/").
K8S_TOKEN = "k8s-bearer-t0ken-6b2f"
K8S_TOKEN_B64URL = base64.urlsafe_b64encode(K8S_TOKEN.encode()).decode().rstrip("=")
WSSE_PASSWORD = "wsse-passw0rd-4d3e4b"

# connect_tunnel.target and a raw start_line (records.py passes them through
# Redactor.connect_target and Redactor.start_line)
CONNECT_TUNNEL_PASSWORD = "c0nnect-tunnel-pa55-1b7e"
START_LINE_PASSWORD = "start-line-passw0rd-8f2a"

# HTTP/2's :authority userinfo (kept beside host when they differ, and as the
# host of a request that sent no Host field)
AUTHORITY_PASSWORD = "auth0rity-pa55-3c9e2d"
AUTHORITY_HOST_PASSWORD = "auth0rity-h0st-pa55-71f0aa"

ALL = [BEARER, BASIC_USERPASS, COOKIE_SESSION, SET_COOKIE_SESSION, QUERY_PASSWORD, FORM_PASSWORD, JSON_TOKEN,
       PROXY_AUTH, SET_COOKIE_PHP_SID, SET_COOKIE_NAMELESS, REFERER_TOKEN, REFERER_PASSWORD, LOCATION_ACCESS_TOKEN,
       LOCATION_CODE, CONTENT_LOCATION_SIG, REFRESH_CODE, LINK_ACCESS_TOKEN, PATH_JSESSIONID, SEMICOLON_PASSWORD,
       USER_PASSWORD, LOGIN_DOT_PASSWORD, PRIVATE_TOKEN, OAUTH_TOKEN, CAMEL_PASSWORD, CAS_TICKET, SAML_REQUEST,
       SAML_RESPONSE, X_API_KEY, X_AUTH_TOKEN, CONNECT_PASSWORD, WS_JWT, K8S_TOKEN, K8S_TOKEN_B64URL, WSSE_PASSWORD,
       CONNECT_TUNNEL_PASSWORD, START_LINE_PASSWORD, AUTHORITY_PASSWORD, AUTHORITY_HOST_PASSWORD]


WSSE_BODY = (
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header>'
    '<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
    "<wsse:UsernameToken><wsse:Username>bob</wsse:Username>"
    '<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">'
    "{}</wsse:Password></wsse:UsernameToken></wsse:Security></soap:Header>"
    "<soap:Body><ping/></soap:Body></soap:Envelope>"
)


def _request(line: str, *headers: str, body: bytes = b"", host: str = "app.example") -> bytes:
    head = [line, f"Host: {host}", *headers]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _response(status: str, *headers: str, body: bytes = b"") -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body


_OK = _response("204 No Content")

# (name, request bytes, response bytes, {field path: expected value given
# tok}); a field path is the keys from the record down, "/"-separated.  Each
# exchange stands alone on the wire: a client may put several on one
# connection, except the CONNECT (its tunnel takes the connection over), which
# is last wherever it is sent.
SHAPES = [
    (
        "set_cookie_php_name_after_attributes",
        _request("GET /login HTTP/1.1"),
        _response("200 OK", "Set-Cookie: a=1; Path=/; HttpOnly", f"Set-Cookie: user[sid]={SET_COOKIE_PHP_SID}"),
        {"response/headers/set-cookie": lambda tok: f"a={tok('1')}; Path=/; HttpOnly, user[sid]={tok(SET_COOKIE_PHP_SID)}"},
    ),
    (
        "set_cookie_nameless_after_attributes",
        _request("GET /nameless HTTP/1.1"),
        _response("200 OK", "Set-Cookie: a=2; Secure", f"Set-Cookie: {SET_COOKIE_NAMELESS}"),
        {"response/headers/set-cookie": lambda tok: f"a={tok('2')}; Secure, {tok(SET_COOKIE_NAMELESS)}"},
    ),
    (
        "referer_token_and_password",
        _request("GET /next HTTP/1.1", f"Referer: https://app.example/acct?token={REFERER_TOKEN}&password={REFERER_PASSWORD}&tab=1"),
        _OK,
        {"request/headers/referer": lambda tok: (
            f"https://app.example/acct?token={tok(REFERER_TOKEN)}&password={tok(REFERER_PASSWORD)}&tab=1")},
    ),
    (
        "location_fragment_access_token",
        _request("GET /authorize HTTP/1.1"),
        _response("302 Found", f"Location: https://app.example/cb#access_token={LOCATION_ACCESS_TOKEN}&state=xyz"),
        {"response/headers/location": lambda tok: f"https://app.example/cb#access_token={tok(LOCATION_ACCESS_TOKEN)}&state=xyz"},
    ),
    (
        "location_query_code",
        _request("GET /authorize2 HTTP/1.1"),
        _response("302 Found", f"Location: https://app.example/cb?code={LOCATION_CODE}&state=xyz"),
        {"response/headers/location": lambda tok: f"https://app.example/cb?code={tok(LOCATION_CODE)}&state=xyz"},
    ),
    (
        "content_location_and_refresh_and_link",
        _request("GET /doc HTTP/1.1"),
        _response("200 OK", f"Content-Location: /doc/1?sig={CONTENT_LOCATION_SIG}&v=2",
                  f"Refresh: 0; url=/next?code={REFRESH_CODE}",
                  f'Link: <https://api.example/x?page=2&access_token={LINK_ACCESS_TOKEN}>; rel="next"'),
        {
            "response/headers/content-location": lambda tok: f"/doc/1?sig={tok(CONTENT_LOCATION_SIG)}&v=2",
            "response/headers/refresh": lambda tok: f"0; url=/next?code={tok(REFRESH_CODE)}",
            "response/headers/link": lambda tok: f'<https://api.example/x?page=2&access_token={tok(LINK_ACCESS_TOKEN)}>; rel="next"',
        },
    ),
    (
        "path_parameter_jsessionid",
        _request(f"GET /shop;jsessionid={PATH_JSESSIONID}?item=1 HTTP/1.1"),
        _OK,
        {"request/uri": lambda tok: f"/shop;jsessionid={tok(PATH_JSESSIONID)}?item=1"},
    ),
    (
        "semicolon_separated_query_password",
        _request(f"GET /q?a=1;password={SEMICOLON_PASSWORD} HTTP/1.1"),
        _OK,
        {"request/uri": lambda tok: f"/q?a=1;password={tok(SEMICOLON_PASSWORD)}"},
    ),
    (
        "names_containing_secret_words",
        _request(f"GET /w?user_password={USER_PASSWORD}&login.password={LOGIN_DOT_PASSWORD}&private_token={PRIVATE_TOKEN}"
                 f"&oauth_token={OAUTH_TOKEN}&userPassword={CAMEL_PASSWORD}&keyword=shoes HTTP/1.1"),
        _OK,
        {"request/uri": lambda tok: (
            f"/w?user_password={tok(USER_PASSWORD)}&login.password={tok(LOGIN_DOT_PASSWORD)}"
            f"&private_token={tok(PRIVATE_TOKEN)}&oauth_token={tok(OAUTH_TOKEN)}&userPassword={tok(CAMEL_PASSWORD)}"
            "&keyword=shoes")},
    ),
    (
        "cas_ticket",
        _request(f"GET /cas/serviceValidate?service=https%3A%2F%2Fapp.example%2F&ticket={CAS_TICKET} HTTP/1.1"),
        _OK,
        {"request/uri": lambda tok: f"/cas/serviceValidate?service=https%3A%2F%2Fapp.example%2F&ticket={tok(CAS_TICKET)}"},
    ),
    (
        "saml_request_in_query",
        _request(f"GET /sso?SAMLRequest={SAML_REQUEST}&RelayState=r1 HTTP/1.1"),
        _OK,
        {"request/uri": lambda tok: f"/sso?SAMLRequest={tok(SAML_REQUEST)}&RelayState=r1"},
    ),
    (
        "saml_response_in_form",
        _request("POST /acs HTTP/1.1", "Content-Type: application/x-www-form-urlencoded",
                 body=f"SAMLResponse={SAML_RESPONSE}&RelayState=r1".encode()),
        _OK,
        {"request/body/data": lambda tok: f"SAMLResponse={tok(SAML_RESPONSE)}&RelayState=r1"},
    ),
    (
        "api_key_and_auth_token_headers",
        _request("GET /api HTTP/1.1", f"X-Api-Key: {X_API_KEY}", f"X-Auth-Token: {X_AUTH_TOKEN}"),
        _OK,
        {"request/headers/x-api-key": lambda tok: tok(X_API_KEY),
         "request/headers/x-auth-token": lambda tok: tok(X_AUTH_TOKEN)},
    ),
    (
        "websocket_protocol_kubernetes_bearer",
        _request("GET /api/v1/watch HTTP/1.1", "Connection: Upgrade", "Upgrade: websocket",
                 "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 f"Sec-WebSocket-Protocol: base64.binary.k8s.io, base64url.bearer.authorization.k8s.io.{K8S_TOKEN_B64URL}"),
        _response("403 Forbidden"),
        {"request/headers/sec-websocket-protocol": lambda tok: (
            f"base64.binary.k8s.io, base64url.bearer.authorization.k8s.io.{tok(K8S_TOKEN)}")},
    ),
    (
        "websocket_protocol_authorization_bearer_jwt",
        _request("GET /graphql HTTP/1.1", "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 f"Sec-WebSocket-Protocol: graphql-ws, authorization.bearer.{WS_JWT}"),
        _response("403 Forbidden"),
        {"request/headers/sec-websocket-protocol": lambda tok: f"graphql-ws, authorization.bearer.{tok(WS_JWT)}"},
    ),
    (
        "wsse_password_in_xml_body",
        _request("POST /soap HTTP/1.1", 'Content-Type: text/xml; charset=utf-8', 'SOAPAction: "ping"',
                 body=WSSE_BODY.format(WSSE_PASSWORD).encode()),
        _OK,
        {"request/body/data": lambda tok: WSSE_BODY.format(tok(WSSE_PASSWORD))},
    ),
    (
        # Last: the tunnel takes the connection over (it carries no HTTP here).
        "connect_authority_userinfo",
        _request(f"CONNECT proxyuser:{CONNECT_PASSWORD}@origin.example:443 HTTP/1.1", host="origin.example:443"),
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        {"request/uri": lambda tok: f"proxyuser:{tok(CONNECT_PASSWORD)}@origin.example:443"},
    ),
]
# What the two ends send into the CONNECT tunnel: the start of a TLS
# handshake and an alert, so the tunnel is not read as HTTP.
TUNNEL_BYTES = (bytes.fromhex("16030100310100002d0303") + bytes(32) + bytes.fromhex("000002130101000000"),
                bytes.fromhex("15030300020228"))


def field(record: dict, path: str):
    """The value at ``path`` ("response/headers/location") in a record, None
    where a key is missing."""
    value = record
    for key in path.split("/"):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def expected_and_actual(records: list[dict], tok) -> tuple[dict, dict]:
    """``{shape name: {field path: value}}`` as SHAPES expect it and as
    ``records`` (one per shape, in SHAPES order) hold it, for one assert."""
    expected = {name: {path: want(tok) for path, want in fields.items()} for name, _, _, fields in SHAPES}
    actual = {name: {path: field(r, path) for path in fields} for (name, _, _, fields), r in zip(SHAPES, records)}
    return expected, actual

