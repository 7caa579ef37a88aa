"""What x_start carries (l7r/session_params.py), from a real database: the admin's keys and
values win, and nothing but the client's own namespace comes from the client."""
from qvd.db.config import Config
from qvd.l7r.db import L7rDb
from qvd.l7r.session_params import x_start_params


def test_admin_values_win_and_client_keys_stay_in_their_namespace(demo):
    demo.ok("vm", "propset", "-f", "name=desk", "qvd.client.geometry=1024x768",
            "vma.on_action.connect=/usr/local/bin/audit")
    (vm_id,), = demo.sql("SELECT id FROM vms WHERE name = 'desk'")
    client = [("qvd.client.geometry", "4000x4000"), ("qvd.client.keyboard", "pc105/es"),
              ("custom.ticket", "42"), ("vma.on_action.connect", "/tmp/evil"),
              ("qvd.vm.user.name", "root"), ("vma.x_session", "/tmp/evil")]
    params = x_start_params(L7rDb(demo.params), Config(), vm_id, None, client)
    assert params["qvd.client.geometry"] == "1024x768"  # the admin's
    assert params["qvd.client.keyboard"] == "pc105/es" and params["custom.ticket"] == "42"
    assert params["vma.on_action.connect"] == "/usr/local/bin/audit"
    assert params["qvd.vm.user.name"] == "qvd"  # the node's setting, not the client's root
    assert "vma.x_session" not in params  # unset by the admin: not taken from the client
