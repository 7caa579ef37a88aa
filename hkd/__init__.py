"""qvd-hkd, the node daemon: the node's lease and fencing, the cluster monitor, the watchdog,
VM commands from the database, the VM state machines and the backends (backends/) that run
the VMs, and the L7R acceptor it keeps running."""
