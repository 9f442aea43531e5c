"""The walk: probe every host in parallel, take the client's view, then judge (doctor/registry.py)."""

import os
from concurrent.futures import ThreadPoolExecutor

from doctor import checks  # noqa: F401 (importing it registers the checks)
from doctor.facts import Facts
from doctor.hosts import Hosts, role_default
from doctor.nginxconf import tls_server
from doctor.registry import evaluate
from doctor.site import Site, handshake, session, tls_facts

SERVICE = "gunicorn"
LOG_WINDOW = 600  # seconds of logs shown beside the first failing check


def _each(names, probe):
    with ThreadPoolExecutor(max(1, len(names))) as pool:
        return dict(zip(names, pool.map(probe, names), strict=True))


def gather(inventory, user=None, origin=None, sudo=False, token_ttl=None):
    """Facts of every host of every group, and the client's view; nothing on the hosts is changed."""
    hosts = Hosts(inventory, sudo=sudo)
    names = hosts.names()
    # One app host mints the token and runs the sender; the event reaches the socket wherever it is.
    session_host = hosts.groups["app"][0]
    user = user or hosts.variables(session_host).get("doctor_user") or "demo"

    def probe(name):
        return hosts.probe(
            name,
            mode="facts",
            service=SERVICE,
            since_seconds=LOG_WINDOW,
            sample_seconds=1.0,
            token_user=user if name == session_host else None,
            token_args=["--ttl", str(token_ttl)] if token_ttl is not None else [],
        )

    facts = Facts(inventory=str(inventory), groups=hosts.groups, hosts=_each(names, probe))
    facts.session_host = session_host
    web = facts.of("web")[0]
    server = tls_server(web.nginx_conf) or {"server_name": web.name, "port": 443, "certificate": None}
    # A self-signed certificate is trusted only where the inventory made it on purpose; doctor_cafile is a
    # CA of the operator's (a test ACME server's, a company's own), doctor_connect_address where the
    # public name points from here (a web host behind a load balancer, a name not in DNS yet).
    web_vars = hosts.variables(web.name)
    pem = None
    source = web_vars.get("nginx_certificate_source", role_default("nginx", "nginx_certificate_source"))
    if source == "self-signed":
        pem = (web.nginx.get("certificates") or {}).get(server["certificate"])
    name = server["server_name"]
    facts.site = Site.trusting(
        name,
        server["port"],
        origin or f"https://{name}",
        pem,
        cafile=os.path.expanduser(web_vars["doctor_cafile"]) if web_vars.get("doctor_cafile") else None,
        address=web_vars.get("doctor_connect_address"),
    )
    facts.tls = tls_facts(facts.site)
    facts.handshake = handshake(facts.site)
    token = facts.on(session_host).probe.get("token")

    def send(company_id):
        return hosts.probe(session_host, mode="send", company=company_id, service=SERVICE)

    if token and not facts.tls.get("error"):
        facts.session = session(facts.site, token, send)

    logged = facts.names("web", "app")

    def logs(name):
        return hosts.probe(name, mode="logs", service=SERVICE, position=facts.hosts[name]["log_position"])

    facts.walk_logs = _each(logged, logs)
    return facts


def walk(inventory, **options):
    """Gather, then every check in walk order: (facts, results)."""
    facts = gather(inventory, **options)
    return facts, evaluate(facts)


def recent_log_lines(facts):
    """Errors of the last ten minutes on every web and app host, shown with the first failing check."""
    several = len(facts.names("web", "app")) > 1
    lines = []
    for h in facts.of("web", "app"):
        found = (h.gunicorn.get("errors") or []) + (h.nginx.get("errors") or [])
        found += sum((facts.walk_logs.get(h.name, {}).get(source) or [] for source in ("gunicorn", "nginx")), [])
        lines += [f"{h.name}: {line}" if several else line for line in dict.fromkeys(found)]
    return lines
