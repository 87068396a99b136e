"""Zeek's own test traces for NFLOG and Teredo, when they sit beside the
repository (../shared/conformance/zeek/<test>/): `sniffd read` must give the
HTTP rows Zeek's http.log has for them (method, URI, host, status), copied
here by hand from those logs.

Zeek logs the URI with %-escapes decoded (its ``unescaped_URI``), sniffd as
sent: the URIs are compared decoded.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
from pcapcheck import read_records

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "zeek"

needs_traces = pytest.mark.skipif(not CONFORMANCE.is_dir(),
                                  reason=f"../shared/conformance not present: Zeek's traces are not at {CONFORMANCE}")

TEREDO = {"type": "teredo", "src": "192.168.2.16", "dst": "83.170.1.38"}  # the client and its relay (tshark)

CASES = {
    # test directory / capture: Zeek's rows (method, uri, host, status), and
    # the tunnel sniffd reports for each (None: no tunnel)
    "core.nflog/nflog-http.pcap": [
        (("GET", "/", "www.example.net", 200), None),
    ],
    "core.tunnels.teredo/Teredo.pcap": [
        (("POST", "/cgi-bin/iavs4stats.cgi", "download913.avast.com", 204), None),
        (("GET", "/", "ipv6.google.com", 200), [TEREDO]),
        (("GET", "/search?hl=en&q=Wireshark+!&btnG=Google+Search", "ipv6.google.com", 200), [TEREDO]),
        (("GET", "/", "www.wireshark.org", 200), None),
    ],
}


@needs_traces
@pytest.mark.parametrize("trace", sorted(CASES))
def test_sniffd_gives_zeek_s_http_rows(tmp_path, trace):
    copy = tmp_path / Path(trace).name  # read_records writes beside its input
    copy.write_bytes((CONFORMANCE / trace).read_bytes())
    got = [((r["request"]["method"], unquote(r["request"]["uri"]), r["request"]["host"], r["response"]["status"]),
            r.get("tunnel")) for r in read_records(copy)]
    assert CASES[trace] == got
