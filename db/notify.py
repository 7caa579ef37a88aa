"""NOTIFY channels, sent by triggers (see the first migration) on commit of any writer.

| channel                            | when                                     | payload            |
|------------------------------------|------------------------------------------|--------------------|
| qvd_cmd_for_vm_on_host<host_id>    | vm_runtimes.vm_cmd set for a VM on host  | <vm_id>:<vm_cmd>   |
| qvd_cmd_for_user_on_host<host_id>  | vm_runtimes.user_cmd set; host = l7r's   | <vm_id>:<user_cmd> |
| qvd_state_of_vm<vm_id>             | vm_state or user_state changed           | <vm_state>:<user_state> |
| qvd_cmd_for_host<host_id>          | host_runtimes.cmd set                    | <cmd>              |
| qvd_host_state                     | host_runtimes.state changed              | <host_id>:<state>  |
| qvd_config_changed                 | configs or ssl_configs row changed       | <tenant_id>:<key>  |
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
