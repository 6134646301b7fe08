"""XMPP over BOSH (XEP-0124 1.11.2, XEP-0206 1.4) at /http-bind on the HTTP(S) listeners.

A BOSH session is the same C2SSession as a TCP stream, with another transport: each HTTP
request carries a <body/> of zero or more elements for the session, and the session's
output waits in an outbox until a request is there to carry it back. The pieces:

* ``wire``: request bodies through the restricted stream parser, response bodies built;
* ``stream``: BoshC2S (the C2SSession's framing over BOSH) and BoshTransport (its writes go
  to the outbox);
* ``session``: BoshSession, the XEP-0124 rules (rid order and window, holding, replay of
  responses, pause, terminate, inactivity);
* ``request``: a request as a session sees it, and the session's terms;
* ``handback``: what a session never delivered, when it ends (XEP-0206 §7);
* ``http``: the twisted.web resource (sessions by sid, CORS, HTTP details).
"""
