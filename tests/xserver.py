"""A real X server for the client side of NX tests (Xvfb), stopped by PID."""
import os
import subprocess

from hkd_nodes import wait_for
from qvd.vma.session import free_display


class Xvfb:
    def __init__(self):
        self.display = free_display(200)
        self.proc = subprocess.Popen(["Xvfb", f":{self.display}", "-nolisten", "tcp",
                                      "-screen", "0", "1024x768x24"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_for(lambda: os.path.exists(f"/tmp/.X11-unix/X{self.display}"), 10, "Xvfb")

    @property
    def env(self) -> dict:
        return dict(os.environ, DISPLAY=f":{self.display}")

    def windows(self) -> str:
        return subprocess.run(["xwininfo", "-root", "-tree"], env=self.env, capture_output=True,
                              text=True, timeout=10).stdout

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
