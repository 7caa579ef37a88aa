"""The settings of QVD's desktop session (desktop.py): Openbox, the panel, PCManFM's desktop and
the applications menu, written into one directory that the session puts first in
XDG_CONFIG_DIRS. They are ours, not the image's /etc/xdg (a host-built image does not even
bind it): the desktop looks the same in every image, and a user's ~/.config still wins.
"""
from __future__ import annotations

import os

BACKGROUND = "#2e5c8a"  # the desktop's colour: the test and the README picture look for it
PANEL_HEIGHT = 28
PROFILE = "qvd"  # lxpanel's and pcmanfm's profile name, the directories below

OPENBOX_RC = """<?xml version="1.0" encoding="UTF-8"?>
<openbox_config xmlns="http://openbox.org/3.4/rc">
  <focus><focusNew>yes</focusNew><followMouse>no</followMouse></focus>
  <placement><policy>Smart</policy><center>yes</center></placement>
  <theme>
    <name>Clearlooks</name><titleLayout>NLIMC</titleLayout><keepBorder>yes</keepBorder>
    <font place="ActiveWindow"><name>sans</name><size>9</size><weight>bold</weight></font>
    <font place="InactiveWindow"><name>sans</name><size>9</size><weight>bold</weight></font>
  </theme>
  <desktops><number>1</number><names><name>Desktop</name></names></desktops>
  <keyboard>
    <keybind key="A-F4"><action name="Close"/></keybind>
    <keybind key="A-Tab"><action name="NextWindow"/></keybind>
    <keybind key="A-S-Tab"><action name="PreviousWindow"/></keybind>
  </keyboard>
  <mouse>
    <dragThreshold>1</dragThreshold><doubleClickTime>500</doubleClickTime>
    <context name="Frame">
      <mousebind button="A-Left" action="Press"><action name="Focus"/><action name="Raise"/></mousebind>
      <mousebind button="A-Left" action="Drag"><action name="Move"/></mousebind>
      <mousebind button="A-Right" action="Drag"><action name="Resize"/></mousebind>
    </context>
    <context name="Titlebar">
      <mousebind button="Left" action="Drag"><action name="Move"/></mousebind>
      <mousebind button="Left" action="DoubleClick"><action name="ToggleMaximize"/></mousebind>
    </context>
    <context name="Titlebar Top Right Bottom Left TLCorner TRCorner BRCorner BLCorner Client">
      <mousebind button="Left" action="Press"><action name="Focus"/><action name="Raise"/></mousebind>
    </context>
    <context name="Top Right Bottom Left TLCorner TRCorner BRCorner BLCorner">
      <mousebind button="Left" action="Drag"><action name="Resize"/></mousebind>
    </context>
    <context name="Close"><mousebind button="Left" action="Click"><action name="Close"/></mousebind></context>
    <context name="Maximize"><mousebind button="Left" action="Click"><action name="ToggleMaximize"/></mousebind></context>
    <context name="Iconify"><mousebind button="Left" action="Click"><action name="Iconify"/></mousebind></context>
    <context name="Root">
      <mousebind button="Right" action="Press"><action name="ShowMenu"><menu>root-menu</menu></action></mousebind>
    </context>
  </mouse>
  <menu><file>menu.xml</file></menu>
</openbox_config>
"""

OPENBOX_MENU = """<?xml version="1.0" encoding="UTF-8"?>
<openbox_menu xmlns="http://openbox.org/3.4/menu">
  <menu id="root-menu" label="Desktop">
    <item label="Terminal"><action name="Execute"><command>lxterminal</command></action></item>
    <item label="Files"><action name="Execute"><command>pcmanfm</command></action></item>
    <separator/>
    <item label="Log out"><action name="Exit"><prompt>no</prompt></action></item>
  </menu>
</openbox_menu>
"""

# Logout ends Openbox, and with it the session (desktop.py waits for the window manager).
PANEL_COMMANDS = """[Command]
FileManager=pcmanfm %s
Terminal=lxterminal
Logout=openbox --exit
"""

PANEL = f"""Global {{
  edge=bottom
  align=left
  widthtype=percent
  width=100
  height={PANEL_HEIGHT}
  transparent=0
  background=0
  setdocktype=1
  setpartialstrut=1
  usefontcolor=0
}}
Plugin {{
  type=menu
  Config {{
    image=/usr/share/lxpanel/images/my-computer.png
    system {{
    }}
    separator {{
    }}
    item {{
      image=gnome-logout
      command=logout
    }}
  }}
}}
Plugin {{
  type=launchbar
  Config {{
    Button {{
      id=lxterminal.desktop
    }}
    Button {{
      id=pcmanfm.desktop
    }}
  }}
}}
Plugin {{
  type=taskbar
  expand=1
  Config {{
    tooltips=1
    ShowAllDesks=1
    MaxTaskWidth=200
  }}
}}
Plugin {{
  type=dclock
  Config {{
    ClockFmt=%R
    TooltipFmt=%A %x
  }}
}}
"""

# no volume mounting (no udisks in a VM), no window manager menu on the desktop: no dialogs
PCMANFM = f"""[config]
bm_open_method=0

[volume]
mount_on_startup=0
mount_removable=0
autorun=0

[desktop]
wallpaper_mode=color
desktop_bg={BACKGROUND}
desktop_fg=#ffffff
desktop_shadow=#000000
show_wm_menu=0

[ui]
win_width=640
win_height=480
"""

LIBFM = """[config]
terminal=lxterminal
"""

# The freedesktop applications menu of the panel (XDG_MENU_PREFIX=qvd-), LXDE's categories.
MENU = """<!DOCTYPE Menu PUBLIC "-//freedesktop//DTD Menu 1.0//EN"
 "http://www.freedesktop.org/standards/menu-spec/1.0/menu.dtd">
<Menu>
  <Name>Applications</Name>
  <DefaultAppDirs/>
  <DefaultDirectoryDirs/>
""" + "".join(f"""  <Menu>
    <Name>{name}</Name>
    <Directory>lxde-{directory}.directory</Directory>
    <Include><And><Category>{category}</Category></And></Include>
  </Menu>
""" for name, directory, category in (
    ("Accessories", "utility", "Utility"), ("Graphics", "graphics", "Graphics"),
    ("Internet", "network", "Network"), ("Office", "office", "Office"),
    ("Programming", "development", "Development"), ("System Tools", "system-tools", "System"),
)) + "</Menu>\n"

FILES = {
    "openbox/rc.xml": OPENBOX_RC,
    "openbox/menu.xml": OPENBOX_MENU,
    f"lxpanel/{PROFILE}/config": PANEL_COMMANDS,
    f"lxpanel/{PROFILE}/panels/panel": PANEL,
    f"pcmanfm/{PROFILE}/pcmanfm.conf": PCMANFM,
    "libfm/libfm.conf": LIBFM,
    "menus/qvd-applications.menu": MENU,
}


def write(directory: str) -> None:
    """Every file above under directory (a fresh one of the session's own)."""
    for name, text in FILES.items():
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
