#!/usr/bin/env bash
# Installs what qvd needs on Debian 12: Debian packages (only the missing ones), then a .venv
# with the package in editable mode. Safe to run again; make run and make test call it.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(postgresql ca-certificates tigervnc-standalone-server)
# slapd and ldap-utils: the LDAP tests' server; the rest builds python-ldap from source.
DEBS+=(slapd ldap-utils libldap2-dev libsasl2-dev pkg-config gcc python3-dev)
# Desktops: xterm, the process backend's session; nxagent for NX sessions; xrandr, which fits
# a pool spare's prepared Xvnc to its first client (vma/vnc_session.py); nxproxy, Xvfb and
# xwininfo for the client side of the NX tests.
DEBS+=(xterm nxagent x11-xserver-utils nxproxy xvfb x11-utils)
# QVD's desktop session in VMs (vma/desktop.py): window manager, panel, file manager, terminal
# (78 MiB installed, two thirds of it Ghostscript and its fonts, which Openbox's imlib2 pulls
# in; 15 s to download and install).
DEBS+=(openbox lxpanel pcmanfm lxterminal)
# The LXC backend: Debian's lxc (lxc-start, lxc-stop, lxc-info, lxc-attach in tests), nftables,
# dnsmasq for vm.network.use_dhcp.
DEBS+=(lxc nftables dnsmasq-base)
# The KVM backend: libvirt without systemd (the -sysv package), QEMU, qemu-img; libvirt-dev
# builds libvirt-python; busybox-static makes the tests' tiny guest.
DEBS+=(libvirt-daemon-system libvirt-daemon-system-sysv qemu-system-x86 qemu-utils libvirt-dev
       busybox-static)
# The metrics test's real scraper (tests/test_metrics.py).
DEBS+=(prometheus)
# The web pages' tests drive a real headless chromium through Debian's chromedriver
# (tests/browser.py): never selenium-manager, which would download a browser.
DEBS+=(chromium chromium-driver)
# npm installs the pages' assets (package.json: htmx, its SSE extension, noVNC). A nodejs
# from elsewhere (NodeSource) bundles npm and conflicts with Debian's npm package.
DEBS+=(nodejs)
command -v npm >/dev/null || DEBS+=(npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || DEBS+=(python3-venv)

missing=()
for pkg in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# The browser assets into node_modules/ (never committed), again only when the lock is newer.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    echo "install-deps: installing the npm assets (package-lock.json)"
    npm ci --no-audit --no-fund --omit=dev --quiet >/dev/null
    touch node_modules
fi
