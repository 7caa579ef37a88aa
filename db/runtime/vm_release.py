"""What a VM's runtime row holds while it has a node and a connection, and how each is given
back: SET fragments for the statements of qvd-hkd and the L7R."""

# Leaving the node: everything that placed the VM there is cleared.
RELEASE_NODE = """host_id = NULL, vm_cmd = NULL, vm_pid = NULL, vm_address = NULL,
 vm_vma_port = NULL, vm_x_port = NULL, vm_vnc_port = NULL, vm_serial_port = NULL,
 current_di_id = NULL, current_osf_id = NULL, vma_secret = NULL"""

# The user's connection is over, whoever noticed it (its L7R, the node that killed it, the
# cluster that lost its node).
DISCONNECTED = """user_state = 'disconnected', user_state_ts = now(), user_cmd = NULL,
 l7r_pid = NULL, l7r_host_id = NULL"""
