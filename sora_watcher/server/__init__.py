"""The HTTP service beside the inbox: the API, the dashboard, the health checks and /metrics.

It runs in the daemon's process (``sora-watcher run``), on a thread of its own, and reads what
the daemon writes (records, journals, the status board, images) without ever looking into the
daemon's memory; the one thing it writes is a file in ``inbox/`` (see ``submit``). Its
settings (SORA_HTTP, SORA_API_TOKEN) are in ``sora_watcher.service_settings``, beside the
webhooks' and the alerts', which the daemon reads without this package. Parts:

- ``context``: what the routes are given (settings, folders, the inbox's rules);
- ``auth``: the token, the dashboard's cookie, cross-site protection;
- ``jobs_routes``, ``files_routes``, ``health_routes``, ``dashboard``: the routes
  (``dashboard_view``: what the dashboard shows, read from disk);
- ``app``: the FastAPI application, its limits and its errors;
- ``runner``: uvicorn on a thread, on a socket bound before the daemon takes work.
"""
