"""The ASGI portal: provider webhooks, public unsubscribe pages, (later) the admin UI."""
