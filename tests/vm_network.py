"""The bridges the tests' nodes make. One left by an interrupted run keeps its address on the
test network and takes the route to the VMs (nodes then refuse to start any: see
bridge._refuse_overlap), so a test clears the network before it starts and after it ends."""
import ipaddress

from pyroute2 import IPRoute

from qvd.hkd.backends.bridge import remove_bridge
from qvd.hkd.backends.firewall import remove as remove_firewall


def remove_test_bridge(name: str) -> None:
    remove_bridge(name)
    remove_firewall(name)


def clear_network(network: str, keep: str = "") -> None:
    """Remove every qvd* link but `keep` that has an address on `network`."""
    wanted = ipaddress.IPv4Network(network)
    with IPRoute() as ip:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        stale = {names.get(addr["index"]) for addr in ip.get_addr(family=2)
                 if ipaddress.IPv4Network(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}",
                                          strict=False).overlaps(wanted)}
    for name in stale:
        if name and name.startswith("qvd") and name != keep:
            remove_test_bridge(name)
