"""The HTTP/1.x stage: each direction of a connection framed into messages,
responses paired with requests.

Modules, one job each, in the order data flows:

* ``syntax``: start lines, header fields and body framing rules (pure);
* ``reader``: one direction's incremental parser, a state machine
  (``MessageReader``, ``State``);
* ``pairing``: which request each response answers, with the TCP
  acknowledgements when bytes were lost (``Pairing``);
* ``session``: one connection, its mode (``Mode``, ``TRANSITIONS``) and the
  stage's interface to the flow table (``HttpSession``);
* ``message``: the values handed to the records stage.

Why sniffd frames HTTP/1.x itself instead of with llhttp (httptools).
llhttp is a server's parser: fast and correct on what a server should
accept, and it refuses everything else, which for a passive logger means
losing exactly the traffic an analyst wants to see.  Measured on Zeek's own
test traces, it rejects unknown or lowercase methods (``BREW``, ``get``), a
request line without a target or a version (HTTP/0.9), ``HTTP/1.``, spaces
in a CONNECT target, a header line without a colon and ``2XX`` status codes,
and it cannot be told that a response answers HEAD (the old code fed such
responses a byte at a time to stop it at the right place).  Normalising
start lines for it would still leave header and framing decisions (which
Content-Length wins, whether an odd Transfer-Encoding is chunked) inside a
parser whose choices sniffd must report as anomalies, and a second framer
"where llhttp gives up" would mean two sets of framing rules that disagree
on precisely the hostile input.  So there is one framer here, written as the
lenient recipient RFC 9112 describes, and every leniency it takes is named
on the record.  What llhttp does well remains useful as a reference: the
test suite holds this parser to httptools on valid input (same messages,
same framing, hypothesis and the atheris harness), and the speed is measured
against the llhttp-based version in the benchmark.
"""

from sniffd.http.message import Message, Transaction
from sniffd.http.session import HttpSession

__all__ = ["HttpSession", "Message", "Transaction"]
