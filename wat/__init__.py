"""The web administration tool (WAT), served by qvd-api under /wat/: server-rendered pages
(Jinja2) with htmx, over the same domain layer and ACLs as qvd-admin and the REST API.

web.py        what every page shares: templates, the acting administrator, running operations
pages.py      the routers, and how refusals and missing logins are answered
login.py      login and logout (the API's login, its token in a cookie)
dashboard.py  the cluster at a glance
lists.py      lists with filters, sorting, pages, columns and bulk actions
details.py    one object: every field, properties, related objects, its actions
forms.py      creating and changing objects, DI upload, settings
catalog.py    which columns and actions each list offers
spy.py        watching a user's desktop (vm spy): the page and its WebSocket
rfb_input.py  what a watcher's viewer may send to the desktop (view only: no input)
live.py    database changes pushed to open pages (LISTEN/NOTIFY → Server-Sent Events)
assets.py  htmx and its SSE extension, served from the npm install (node_modules/)
"""
from __future__ import annotations


def install(app) -> None:
    """Mount the WAT on the qvd-api application."""
    from . import assets, live, pages
    assets.install(app)
    live.install(app)  # before the pages: /wat/events is not the list of "events"
    pages.install(app)
