"""The stored states and commands; CHECK constraints in the schema are built from these lists.

Sub-steps of a state (starting: preparing, waiting for the VMA ...) live in the HKD handlers.
"""
VM_STATES = ("stopped", "starting", "running", "stopping", "zombie", "debugging")
VM_CMDS = ("start", "stop")
USER_STATES = ("disconnected", "connecting", "connected")
USER_CMDS = ("abort",)
HOST_STATES = ("stopped", "starting", "running", "stopping", "lost")
HOST_CMDS = ("stop",)

# The states in which a VM may be asked to stop (QVD: starting, running, debugging).
VM_STOPPABLE = ("starting", "running", "debugging")
