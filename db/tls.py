"""Checking the L7R's TLS material with cryptography before it is stored."""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization


class TlsError(Exception):
    """Certificate or key unusable; the message says why."""


def _public_bytes(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def check_pair(cert_pem: str, key_pem: str, ca_pem: str | None = None) -> str:
    """Raise TlsError unless the key is the certificate's; return the certificate's subject."""
    try:
        cert = x509.load_pem_x509_certificates(cert_pem.encode())[0]
    except ValueError:
        raise TlsError("the certificate is not a PEM X.509 certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise TlsError("the key is not an unencrypted PEM private key") from None
    if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
        raise TlsError("the key does not belong to the certificate")
    if ca_pem:
        try:
            x509.load_pem_x509_certificates(ca_pem.encode())
        except ValueError:
            raise TlsError("the CA file holds no PEM certificate") from None
    return cert.subject.rfc4514_string()
