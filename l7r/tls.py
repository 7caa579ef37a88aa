"""The L7R's TLS: a server context (TLS 1.2+) from PEM files, and a self-signed pair for
`make run` when no certificate is stored; the server's handshake under one deadline."""
from __future__ import annotations

import datetime
import select
import socket
import ssl
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def handshake(context: ssl.SSLContext, sock: socket.socket, seconds: float) -> ssl.SSLSocket:
    """The server side of the TLS handshake, done within `seconds` in all (a client that
    trickles its hello byte by byte is cut at the deadline, not at a per-recv timeout).
    Raises TimeoutError, ssl.SSLError or OSError."""
    deadline = time.monotonic() + seconds
    sock.setblocking(False)
    tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                wait = select.POLLIN
            except ssl.SSLWantWriteError:
                wait = select.POLLOUT
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("TLS handshake deadline passed")
            poller = select.poll()
            poller.register(tls.fileno(), wait)
            poller.poll(int(left * 1000) + 1)
        tls.setblocking(True)
    except BaseException:
        tls.close()
        raise
    return tls


def self_signed(common_name: str, days: int = 3650) -> tuple[str, str]:
    """(certificate PEM, key PEM) for `common_name`, also valid for localhost/127.0.0.1."""
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = x509.SubjectAlternativeName([x509.DNSName(common_name), x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(alt, critical=False).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())
