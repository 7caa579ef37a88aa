"""A real OpenLDAP server for the tests: slapd started by the fixture, once per run.

Its own slapd.conf and mdb database in a temporary directory, suffix dc=qvd,dc=test, listening
on 127.0.0.1 (ldap:// and ldaps://, StartTLS too) with a certificate signed by a test CA, and
ou=people holding the users of PEOPLE, ou=groups their groups (GROUPS: groupOfNames, which
the memberof overlay shows on each member's entry as memberOf, and posixGroup, found by a
search on memberUid). Run in the foreground (-d) so the fixture owns its PID
and stops exactly that process.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qvd.hkd.backends.process import free_port
from qvd.l7r.client import accepting

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
LDAPADD = shutil.which("ldapadd") or "/usr/bin/ldapadd"
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
BASE = "dc=qvd,dc=test"
ROOTDN, ROOTPW = f"cn=admin,{BASE}", "rootsecret"
# login: (uidNumber, password); gidNumber = uidNumber, home /home/<login>
PEOPLE = {"bob": (2001, "bobpw"), "carol": (2002, "carolpw"), "dave": (2003, "davepw")}
# cn: (objectClass, members)
GROUPS = {"Designers": ("groupOfNames", ["bob"]), "devs": ("posixGroup", ["carol", "dave"])}

CONF = """\
{includes}
pidfile {dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key
# Like directories that take a DN without a password as an anonymous bind that succeeds
# (RFC 4513 5.1.2): the plugin itself must refuse empty passwords.
allow bind_anon_dn
database mdb
maxsize 16777216
suffix "{base}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db
overlay memberof
# Like a real directory: passwords are only usable to bind, never readable.
access to attrs=userPassword by anonymous auth by * none
access to * by * read
"""


@dataclass
class Slapd:
    port: int
    ldaps_port: int
    cacert: str       # the test CA that signed the server's certificate for 127.0.0.1
    directory: str
    proc: subprocess.Popen

    base = BASE
    rootdn, rootpw = ROOTDN, ROOTPW

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def pattern_settings(self) -> dict[str, str]:
        """auth.ldap.* for a direct bind by DN pattern."""
        return {"auth.ldap.host": self.uri, "auth.ldap.dn_pattern": f"uid=%u,ou=people,{BASE}"}

    def search_settings(self) -> dict[str, str]:
        """auth.ldap.* for a search (as the root DN) then a bind as the entry found."""
        return {"auth.ldap.host": self.uri, "auth.ldap.base": BASE,
                "auth.ldap.filter": "(&(objectClass=posixAccount)(uid=%u))",
                "auth.ldap.binddn": ROOTDN, "auth.ldap.bindpass": ROOTPW}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to our own slapd, by its PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def ssha(password: str) -> str:
    """userPassword as {SSHA}: what a directory stores, rather than clear text."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def people_ldif() -> str:
    entries = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: qvd\no: qvd",
               f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people"]
    for login, (number, password) in PEOPLE.items():
        entries.append(
            f"dn: uid={login},ou=people,{BASE}\nobjectClass: inetOrgPerson\n"
            f"objectClass: posixAccount\nuid: {login}\ncn: {login.title()}\nsn: {login}\n"
            f"uidNumber: {number}\ngidNumber: {number}\nhomeDirectory: /home/{login}\n"
            f"userPassword: {ssha(password)}")
    entries.append(f"dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups")
    for number, (name, (kind, members)) in enumerate(GROUPS.items(), 3001):
        if kind == "groupOfNames":
            listed = "\n".join(f"member: uid={m},ou=people,{BASE}" for m in members)
        else:
            listed = f"gidNumber: {number}\n" + "\n".join(f"memberUid: {m}" for m in members)
        entries.append(f"dn: cn={name},ou=groups,{BASE}\nobjectClass: {kind}\ncn: {name}\n"
                       + listed)
    return "\n\n".join(entries) + "\n"


def write_certificates(directory: str) -> None:
    """ca.pem (a test CA) and server.pem/server.key for IP 127.0.0.1 signed by it; libldap
    checks the name, so a self-signed certificate without the address would not do."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, key, signer, ca: bool, san=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qvd test LDAP CA")])
    ca = build(ca_name, ca_name, ca_key, ca_key, True)
    server = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name,
                   key, ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    pem = serialization.Encoding.PEM
    with open(os.path.join(directory, "ca.pem"), "wb") as handle:
        handle.write(ca.public_bytes(pem))
    with open(os.path.join(directory, "server.pem"), "wb") as handle:
        handle.write(server.public_bytes(pem))
    with open(os.path.join(directory, "server.key"), "wb") as handle:
        handle.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def start_slapd(directory: str) -> Slapd:
    os.makedirs(os.path.join(directory, "db"), exist_ok=True)
    write_certificates(directory)
    includes = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
    conf = os.path.join(directory, "slapd.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(CONF.format(includes=includes, dir=directory, base=BASE, rootdn=ROOTDN,
                                 rootpw=ROOTPW))
    port, ldaps_port = free_port(), free_port()
    log = open(os.path.join(directory, "slapd.log"), "wb")
    # -d keeps slapd in the foreground (our child, our PID); as root it stays root (no -u/-g):
    # the database directory is ours.
    proc = subprocess.Popen(
        [SLAPD, "-d", "0", "-f", conf,
         "-h", f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    server = Slapd(port, ldaps_port, os.path.join(directory, "ca.pem"), directory, proc)
    deadline = time.monotonic() + 15
    while not accepting("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            with open(os.path.join(directory, "slapd.log"), encoding="utf-8",
                      errors="replace") as handle:
                raise RuntimeError(f"slapd did not start: {handle.read()[-2000:]}")
        time.sleep(0.05)
    added = subprocess.run([LDAPADD, "-x", "-H", server.uri, "-D", ROOTDN, "-w", ROOTPW],
                           input=people_ldif(), capture_output=True, text=True, timeout=30)
    if added.returncode != 0:
        server.stop()
        raise RuntimeError(f"ldapadd failed: {added.stderr}")
    return server


@pytest.fixture(scope="session")
def slapd(tmp_path_factory):
    """The running server (see Slapd); a missing slapd skips, except under CI."""
    if not (os.access(SLAPD, os.X_OK) and os.access(LDAPADD, os.X_OK)):
        reason = "slapd/ldapadd not installed (apt-get install slapd ldap-utils)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = start_slapd(str(tmp_path_factory.mktemp("slapd")))
    yield server
    server.stop()
