"""qvd-client: list your virtual desktops and connect to one.

The password comes from a prompt, the QVD_PASSWORD environment variable or --password-stdin,
never from the command line; once logged in, qvd-client keeps an auth token (client/tokens.py)
and the next run uses it instead. The server's certificate is checked against the system's CAs,
a CA file (--ca) or a pinned SHA-256 fingerprint (--fingerprint).

After the desktop answers, the stream goes to a local port for any VNC viewer (--listen,
the default), to nxproxy for NX sessions (--nxproxy), or becomes a PNG (--screenshot).
"""
from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import ssl
import sys

from qvd.l7r.client import ProtocolError, QvdConnection, tls_context

from . import tokens
from .desktop import run_listen, run_nxproxy, run_screenshot
from .errors import ClientError, explain


def _fingerprint(value: str) -> bytes:
    digest = value.lower().removeprefix("sha256:").replace(":", "")
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ClientError(f"--fingerprint must be sha256:<64 hex digits>, not {value!r}")
    return raw


def open_connection(args) -> QvdConnection:
    pinned = _fingerprint(args.fingerprint) if args.fingerprint else None
    context = tls_context(args.ca, verify=not (pinned or args.insecure))
    try:
        conn = QvdConnection(args.host, args.port, context, timeout=args.timeout)
    except ssl.SSLCertVerificationError as exc:
        raise ClientError(f"The server's certificate is not trusted: {exc.verify_message}. "
                          "Use --ca FILE or --fingerprint sha256:...") from None
    except (ssl.SSLError, OSError) as exc:
        raise ClientError(f"Cannot reach {args.host}:{args.port}: {exc}") from None
    if pinned:
        seen = hashlib.sha256(conn.sock.getpeercert(binary_form=True)).digest()
        if seen != pinned:
            conn.close()
            raise ClientError(f"The server's certificate fingerprint is sha256:{seen.hex()}, "
                              "not the pinned one: refusing to send the password.")
    return conn


def read_password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("QVD_PASSWORD") is not None:
        return os.environ["QVD_PASSWORD"]
    if not sys.stdin.isatty():
        raise ClientError("No password: use QVD_PASSWORD, --password-stdin or a terminal.")
    return getpass.getpass(f"Password for {args.login}: ")


def logged_in(args) -> tuple[QvdConnection, list[dict]]:
    """A connection authenticated as --login, and the user's VMs. The token kept from an
    earlier run is tried first; when the server refuses it (expired, revoked) it is forgotten
    and the password asked for, and a new token is kept for the next run (unless --no-token)."""
    if not args.login:
        raise ClientError("No login: use --login (or QVD_LOGIN).")
    conn = open_connection(args)
    try:
        token = None if args.no_token else tokens.load(args.host, args.port, args.login)
        if token:
            conn.use_token(token)
            reply = conn.list_of_vm()
            if reply.status != 401:
                if reply.status != 200:
                    raise ClientError(explain(reply))
                return conn, reply.json()
            tokens.forget(args.host, args.port, args.login)
        conn.login(args.login, read_password(args))
        vms = list_vms(conn)
        if not args.no_token:
            reply = conn.create_auth_token()
            if reply.status == 200:
                tokens.save(args.host, args.port, args.login, reply.json()["auth_token"])
        return conn, vms
    except BaseException:
        conn.close()
        raise


def list_vms(conn: QvdConnection) -> list[dict]:
    reply = conn.list_of_vm()
    if reply.status != 200:
        raise ClientError(explain(reply))
    return reply.json()


def cmd_list(args) -> None:
    conn, vms = logged_in(args)
    conn.close()
    if args.json:
        print(json.dumps(vms, indent=2))
        return
    print(f"{'ID':>6}  {'NAME':20} {'STATE':10} BLOCKED")
    for vm in vms:
        print(f"{vm['id']:>6}  {vm['name']:20} {vm['state']:10} {'yes' if vm['blocked'] else 'no'}")


def pick_vm(vms: list[dict], wanted: str | None) -> dict:
    if wanted:
        for vm in vms:
            if str(vm["id"]) == wanted or vm["name"] == wanted:
                return vm
        raise ClientError(f"You have no virtual machine {wanted!r}.")
    if not vms:
        raise ClientError("You have no virtual machine.")
    if len(vms) > 1:
        names = ", ".join(f"{vm['name']} (id {vm['id']})" for vm in vms)
        raise ClientError(f"You have several virtual machines, pick one with --vm: {names}.")
    return vms[0]


def cmd_connect(args) -> None:
    conn, vms = logged_in(args)
    try:
        vm = pick_vm(vms, args.vm)
        params = {"id": vm["id"], "qvd.client.geometry": args.geometry}
        if args.keyboard:
            params["qvd.client.keyboard"] = args.keyboard
        if args.link:
            params["qvd.client.link"] = args.link
        reply = conn.request("/qvd/connect_to_vm", params,
                             {"Connection": "Upgrade", "Upgrade": "QVD/1.0"},
                             on_interim=lambda _s, h: print(
                                 f"... {h.get('x-qvd-vm-info', '')}", file=sys.stderr))
        if reply.status != 101:
            raise ClientError(explain(reply))
        early, conn.buffer = conn.buffer, b""
        if args.screenshot:
            run_screenshot(conn.sock, early, args.screenshot, args.settle)
        elif args.nxproxy:
            run_nxproxy(conn.sock, early, args)
        else:
            run_listen(conn.sock, early, args.listen)
    finally:
        conn.close()


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default=os.environ.get("QVD_HOST", "127.0.0.1"))
    common.add_argument("--port", type=int, default=int(os.environ.get("QVD_PORT", "8443")))
    common.add_argument("--login", default=os.environ.get("QVD_LOGIN"),
                        help="login, or login@tenant")
    common.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    trust = common.add_mutually_exclusive_group()
    trust.add_argument("--ca", help="CA certificate file that signed the server's certificate")
    trust.add_argument("--fingerprint", help="pinned sha256:<hex> of the server's certificate")
    trust.add_argument("--insecure", action="store_true", help="do not check the certificate")
    common.add_argument("--no-token", action="store_true",
                        help="always use the password; neither use nor keep an auth token")
    common.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for answers")
    top = argparse.ArgumentParser(prog="qvd-client", description=__doc__.splitlines()[0])
    verbs = top.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", parents=[common], help="your virtual machines")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_list)
    connect = verbs.add_parser("connect", parents=[common], help="open your desktop")
    connect.add_argument("--vm", help="id or name (needed when you have several)")
    connect.add_argument("--geometry", default="1024x768")
    connect.add_argument("--keyboard", help="NX keyboard, e.g. pc105/us")
    connect.add_argument("--link", help="NX link speed: modem, isdn, adsl, wan, lan")
    mode = connect.add_mutually_exclusive_group()
    mode.add_argument("--listen", default="127.0.0.1:5900", metavar="ADDRESS:PORT",
                      help="serve the desktop stream there for one viewer (default)")
    mode.add_argument("--nxproxy", action="store_true", help="run nxproxy on $DISPLAY (NX)")
    mode.add_argument("--screenshot", metavar="FILE.png", help="save the desktop as a PNG (VNC)")
    connect.add_argument("--settle", type=float, default=1.0,
                         help="seconds of screen updates gathered for --screenshot")
    connect.set_defaults(run=cmd_connect)
    return top


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except ClientError as exc:
        print(f"qvd-client: {exc}", file=sys.stderr)
        sys.exit(1)
    except (ProtocolError, ssl.SSLError, OSError) as exc:
        print(f"qvd-client: the connection failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
