"""The VM bridge itself (pyroute2, real links): what an admin sees when the VM network clashes
with another link on the node."""
import os

import pytest

from qvd.hkd.backends.base import BackendError
from qvd.hkd.backends.bridge import ensure_bridge, link_exists
from vm_network import clear_network, remove_test_bridge

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bridges need root")


def test_a_vm_network_already_on_another_link_is_refused_with_its_name():
    clear_network("10.239.0.0/24")
    try:
        ensure_bridge("qvdtold", "10.239.0.1", "255.255.255.0")  # left by a crashed setup
        with pytest.raises(BackendError, match=r"10\.239\.0\.0/24 is also on qvdtold"):
            ensure_bridge("qvdtnew", "10.239.0.1", "255.255.255.0")
        assert not link_exists("qvdtnew")  # refused before anything was made
        ensure_bridge("qvdtold", "10.239.0.1", "255.255.255.0")  # its own bridge again: fine
        remove_test_bridge("qvdtold")
        ensure_bridge("qvdtnew", "10.239.0.1", "255.255.255.0")  # once it is gone, fine too
    finally:
        clear_network("10.239.0.0/24")
    assert not link_exists("qvdtold") and not link_exists("qvdtnew")
