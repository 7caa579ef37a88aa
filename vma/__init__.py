"""qvd-vma, the agent inside each VM: its RPC server (answering only the node's secret), the
desktop sessions (VNC, NX) as a state machine, the relay on the desktop port, provisioning and
hooks. Python's standard library only: it runs inside the desktop image."""
