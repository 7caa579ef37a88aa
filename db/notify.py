"""NOTIFY channels, sent by triggers (migrations 0002 and 0010) on commit of any writer.

| channel                            | when                                     | payload            |
|------------------------------------|------------------------------------------|--------------------|
| qvd_cmd_for_vm_on_host<host_id>    | vm_runtimes.vm_cmd set for a VM on host  | <vm_id>:<vm_cmd>   |
| qvd_cmd_for_user_on_host<host_id>  | vm_runtimes.user_cmd set; host = l7r's   | <vm_id>:<user_cmd> |
| qvd_state_of_vm<vm_id>             | vm_state or user_state changed           | <vm_state>:<user_state> |
| qvd_cmd_for_host<host_id>          | host_runtimes.cmd set                    | <cmd>              |
| qvd_host_state                     | host_runtimes.state changed              | <host_id>:<state>  |
| qvd_config_changed                 | configs or ssl_configs row changed       | <tenant_id>:<key>  |
| qvd_pools                          | a pool's sizes changed, one of its VMs   | <pool_id>          |
|                                    | came, went, was given out or changed     |                    |
|                                    | state, a DI tag it uses moved (migration |                    |
|                                    | 0012; the pool keepers LISTEN)           |                    |
| qvd_changes                        | a listing field of a VM, node or session | JSON, below        |
|                                    | changed, or such a row came or went      |                    |

qvd_changes (the WAT's live pages, wat/live.py): {"k": "vm"|"host"|"session", "id": N,
"t": tenant id (null for nodes), "f": {field: new value}, "op": "insert"|"delete" (absent
for an update)}, only the fields that changed, named as in the listings: vm state,
user_state, host (the node's name), last_error (cut to 1000 characters), blocked; host
state, blocked, last_error, vms (its VM count); session user, vm, vm_id, host (on insert),
ended, end_reason.
"""


def vm_cmd_channel(host_id: int) -> str:
    return f"qvd_cmd_for_vm_on_host{host_id}"


def user_cmd_channel(host_id: int) -> str:
    return f"qvd_cmd_for_user_on_host{host_id}"


def vm_state_channel(vm_id: int) -> str:
    return f"qvd_state_of_vm{vm_id}"


def host_cmd_channel(host_id: int) -> str:
    return f"qvd_cmd_for_host{host_id}"


HOST_STATE_CHANNEL = "qvd_host_state"
CONFIG_CHANNEL = "qvd_config_changed"
CHANGES_CHANNEL = "qvd_changes"
