"""The backend interface (Nova's virt/driver.py is the model): a handful of methods.

The HKD calls them from its event loop; they must not block it for long (run slow work in a
thread or a subprocess). kill_all is synchronous: the watchdog calls it without an event loop.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class VmSpec:
    """What a backend needs to run one VM."""
    vm_id: int
    name: str
    memory: int                   # MiB, from the OSF
    image: str                    # path of the DI file in the image store
    # the DI is trusted (dis.trusted): unpacked without the hostile-image checks
    image_trusted: bool = field(default=False, kw_only=True)
    ip: str                       # the VM's network address
    use_overlay: bool = True
    user_storage: int | None = None
    user_id: int | None = None    # the owner (homes per user instead of per VM)
    properties: dict[str, str] = field(default_factory=dict)
    vma_secret: str = ""          # made by the node for this start; the backend hands it in
    discard_home: bool = False    # a throw-away pool VM given back: begins fresh


@dataclass
class VmAddress:
    """Where the HKD and the L7R reach the VM once it runs."""
    address: str
    vma_port: int
    x_port: int
    vnc_port: int | None = None
    secret: str = ""              # what every call to the VM's agent carries (vma/secret.py)


class BackendError(Exception):
    """The backend could not do what was asked; the message is recorded as the VM's last_error."""


class Backend(ABC):
    name = "abstract"

    @abstractmethod
    async def prepare(self, vm: VmSpec) -> VmAddress:
        """Disks, network and ports; nothing runs yet."""

    @abstractmethod
    async def start(self, vm: VmSpec) -> int | None:
        """Start the VM; return the pid of its main process when there is one."""

    @abstractmethod
    async def stop(self, vm_id: int) -> None:
        """Ask the VM to stop (it may take a while)."""

    @abstractmethod
    async def kill(self, vm_id: int) -> None:
        """Stop it now."""

    @abstractmethod
    async def state(self, vm_id: int) -> str:
        """'running' or 'stopped'."""

    @abstractmethod
    async def list(self) -> dict[int, VmAddress | None]:
        """The VMs this node's backend runs now, by VM id."""

    @abstractmethod
    async def cleanup(self, vm_id: int) -> None:
        """Remove what prepare made (the persistent home stays)."""

    async def discard_home(self, vm_id: int) -> None:
        """A throw-away pool VM goes to its next user fresh (hkd/vm_actions.py, before its
        prepare): its home and any kept overlay go. Nothing is kept by default."""

    async def release_node(self) -> None:
        """The node stops cleanly and none of its VMs runs: undo what it set up for them all
        (bridge, firewall, DHCP server). Nothing to undo by default."""

    @abstractmethod
    def kill_all(self) -> list[int]:
        """Kill every VM of this node at once; used by the watchdog. Returns the ids killed."""
