"""qvd-l7r, the HTTPS router: the TLS acceptor forking one process per client connection,
QVD/1.0 framing, authentication plugins (auth/), the endpoints, the connect steps that place,
start and take over a desktop, and the proxy that carries its stream."""
