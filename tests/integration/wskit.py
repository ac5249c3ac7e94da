"""What the asgi worker's websocket test files share: a server running the
echo app of apps/asgi_apps.py, and running a client coroutine to its end
on a fresh event loop."""

import asyncio

APP = "tests.integration.apps.asgi_apps"


def ws_server(make_server, *extra, **kw):
    return make_server("-k", "asgi", *extra, "%s:ws_echo" % APP, **kw)


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)
