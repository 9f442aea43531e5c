"""What the doctor knows of a deployment: every host's probe answer, and the client's view.

`Facts` holds it all; `Facts.on(host)` is one host's view, which the per-host checks read.
Nothing here talks to a host: doctor/walk.py gathers, doctor/checks/ judges.
"""

from dataclasses import dataclass, field
from functools import cached_property

from doctor.nginxconf import Config

GROUPS = ("web", "app", "redis", "db")  # the inventory groups the bundle deploys to, in walk order
REQUIRED_GROUPS = ("web", "app", "redis")  # the database may live outside the inventory


@dataclass
class Facts:
    inventory: str = ""
    groups: dict = field(default_factory=dict)  # group -> inventory host names, in inventory order
    hosts: dict = field(default_factory=dict)  # inventory host name -> its probe's answer, or {"unreachable": why}
    site: object = None  # doctor.site.Site: the public name clients use
    tls: dict = field(default_factory=dict)
    handshake: dict = field(default_factory=dict)
    session: dict = field(default_factory=dict)
    session_host: str = ""  # the app host that minted the token and ran the sender
    token_given: bool = False  # the operator gave the token (NURCRM_DOCTOR_TOKEN): no host minted it
    walk_logs: dict = field(default_factory=dict)  # host -> {"gunicorn": [...], "nginx": [...]} logged during the walk

    @property
    def managed(self):
        """Whether the bundle deployed this deployment: an app host that answers has its marker."""
        return any(self.hosts.get(name, {}).get("managed") for name in self.groups.get("app", ()))

    def on(self, name):
        return HostFacts(name, self.hosts.get(name) or {}, self)

    def of(self, *groups):
        """The views of every host in these groups, each once, in inventory order."""
        names = dict.fromkeys(name for group in groups for name in self.groups.get(group, ()))
        return [self.on(name) for name in names]

    def names(self, *groups):
        return [h.name for h in self.of(*groups)]

    def answering(self, *groups):
        """The views of the hosts of these groups that answered the probe."""
        return [h for h in self.of(*groups) if not h.unreachable]

    def silent(self, *groups):
        """The hosts of these groups that did not answer: name -> why."""
        return {h.name: h.unreachable for h in self.of(*groups) if h.unreachable}


@dataclass
class HostFacts:
    """One host's probe answer; anything else (site, session, ...) comes from the whole walk's facts."""

    name: str
    probe: dict
    facts: Facts

    def __getattr__(self, attribute):
        return getattr(self.facts, attribute)

    @property
    def blind(self):
        """Why the probe could not see this host (it ran without root), or ""."""
        if self.probe.get("root") is False:
            unreadable = ", ".join(self.probe.get("unreadable") or [])
            return f"the probe ran as {self.probe.get('user')}, not root: it could not read {unreadable}"
        return ""

    @property
    def unreachable(self):
        """Why this host did not answer (what its transport said), or "": then it has no other facts."""
        return self.probe.get("unreachable") or ""

    @property
    def machine(self):
        return self.probe.get("machine_id") or self.name

    @property
    def gunicorn(self):
        return self.probe.get("gunicorn") or {}

    @property
    def reports(self):
        return self.gunicorn.get("reports") or {}

    @property
    def redis(self):
        """The app's view of Redis: PING with its own REDIS_URL."""
        return self.probe.get("redis") or {}

    @property
    def redis_server(self):
        """The Redis host's own view of its server."""
        return self.probe.get("redis_server") or {}

    @property
    def sentinel(self):
        """The Redis host's own Sentinel, when it has the bundle's sentinel.conf."""
        return self.probe.get("sentinel") or {}

    @property
    def nginx(self):
        return self.probe.get("nginx") or {}

    @cached_property
    def nginx_config(self):
        """nginx's whole configuration, as `nginx -T` prints it, parsed (doctor/nginxconf.py)."""
        return Config.of(self.nginx.get("dump", ""))

    @property
    def managed(self):
        """Whether the bundle deployed this host: only then do its playbooks restore a layer. The bundle's marker
        (/etc/nurcrm) is on its app hosts, so a deployment is the bundle's when an app host that answers has it;
        its other hosts (web, Redis, database) are then the bundle's too."""
        return bool(self.probe.get("managed")) or self.facts.managed

    @property
    def settings(self):
        """The Django settings the app runs with, as views to judge: each worker's report where the bundle
        deployed the host, else {"manage.py": what the app's own settings module gives, read by the probe with
        the app's interpreter and environment}."""
        if self.managed:
            return self.reports
        django = self.gunicorn.get("django") or {}
        return {"manage.py": django["settings"]} if django.get("settings") else {}
