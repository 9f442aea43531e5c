"""nurcrm_realtime: what keeps a Django Channels project's sockets open and their events flowing, as a
Django app that a project adds to INSTALLED_APPS (optional: the bundle deploys a project without it).

The app role installs it beside nurcrm_ops in every release's virtualenv; docs/project.md says how a
project uses it:

- layers: channels_redis's two layers, the Redis one with a receive that ends when cancelled, the
  pub/sub one writing forwarded events straight to the sockets (fanout); `channel_layers(...)` builds
  CHANNEL_LAYERS, with Redis Sentinel when named (redisconn);
- consumer: RealtimeConsumer, the base of a socket that survives Redis trouble, reloads and floods;
- asgi: the ASGI application with the counted Origin check and the workers' background tasks;
- layer_watch, balance, guard: the resync when Redis loses the groups, the spread over app hosts,
  the per-user cap and the closes of lapsed sockets;
- conf: every setting with its default; checks: `manage.py check` names a bad one.
"""
