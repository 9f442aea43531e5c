"""The bundle's own code in every release's virtualenv, for any Django Channels project.

The app role links this folder into each release's virtualenv (a .pth file), so that what operations
need works with a project that knows nothing of the bundle (docs/project.md):

- hooks: gunicorn's server hooks (roles/asgi/templates/gunicorn.conf.py.j2): every worker's report
  (workerinfo) and its start counted in the metrics;
- httpprotocol, wsprotocol: uvicorn's protocols with a graceful shutdown that answers the request just
  accepted and closes open sockets with 1012 and a closing handshake (asgi_uvicorn names them);
- metrics_server: the exporter that adds up every worker's metrics (the nurcrm-metrics unit);
- selfcheck: the per-host check of a rolling deploy, sockets opened on the host's own gunicorn socket.

Nothing here imports the project; workerinfo reads Django's settings as any Django project has them.
"""
