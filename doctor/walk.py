"""The walk: gather facts (hosts in parallel, then the client's view), then run the checks in order."""

import time
from concurrent.futures import ThreadPoolExecutor

from doctor import checks, hosts
from doctor.nginxconf import strip_comments, tls_server
from doctor.site import Site, handshake, session, tls_facts

SERVICE = "gunicorn"
LOG_WINDOW = 600  # seconds of logs shown beside the first failing check


def gather(inventory, user=None, origin=None, sudo=False, token_ttl=None):
    """Facts of every layer; nothing on the hosts is changed."""
    started = time.time()
    layout = hosts.layout(inventory, sudo=sudo)
    app_vars = layout.hosts["app"].backend.get_variables()
    user = user or app_vars.get("doctor_user") or "demo"
    web_vars = layout.hosts["web"].backend.get_variables()

    def probe(name):
        group = next(g for g, n in layout.names.items() if n == name)
        roles = layout.roles_of(group)
        return hosts.probe(
            layout.hosts[group],
            mode="facts",
            roles=roles,
            service=SERVICE,
            since_seconds=LOG_WINDOW,
            sample_seconds=1.0,
            token_user=user if "app" in roles else None,
            token_args=["--ttl", str(token_ttl)] if token_ttl is not None else [],
        )

    names = sorted(set(layout.names.values()))
    with ThreadPoolExecutor(len(names)) as pool:
        by_name = dict(zip(names, pool.map(probe, names), strict=True))
    facts = checks.Facts(
        web=by_name[layout.names["web"]], app=by_name[layout.names["app"]], redis_host=by_name[layout.names["redis"]]
    )
    nginx = facts.web.get("nginx") or {}
    facts.nginx_conf = strip_comments(nginx.get("dump", ""))
    server = tls_server(facts.nginx_conf) or {"server_name": layout.names["web"], "port": 443, "certificate": None}
    # A self-signed certificate is trusted only where the inventory made it on purpose.
    pem = (
        (nginx.get("certificates") or {}).get(server["certificate"])
        if web_vars.get("nginx_self_signed_certificate") is True
        else None
    )
    name = server["server_name"]
    facts.site = Site.trusting(name, server["port"], origin or f"https://{name}", pem)
    facts.tls = tls_facts(facts.site)
    facts.handshake = handshake(facts.site)
    token = facts.app.get("token")
    app_host = layout.hosts["app"]

    def send(company_id):
        return hosts.probe(app_host, mode="send", company=company_id, service=SERVICE)

    if token and not facts.tls.get("error"):
        facts.session = session(facts.site, token, send)
    window = time.time() - started + 1
    facts.walk_logs = {
        name: hosts.probe(layout.hosts[g], mode="logs", roles=layout.roles_of(g), service=SERVICE, since_seconds=window)
        for g, name in layout.names.items()
        if g in ("web", "app")
    }
    return layout, facts


def evaluate(facts):
    """Every check in the checklist's order; the walk's own log window decides the logs step."""
    results = []
    for _, step_checks in checks.STEPS:
        for check in step_checks:
            if check is checks.recent_errors:
                results.append(_walk_errors(facts))
            else:
                results.append(check(facts))
    return results


def _walk_errors(facts):
    lines = []
    for found in facts.walk_logs.values():
        lines += found.get("gunicorn", []) + found.get("nginx", [])
    if lines:
        return checks.failed(
            "logs",
            "recent_errors",
            "logs",
            f"{len(lines)} error line(s) logged during this walk; last: {lines[-1]}",
            "read journalctl -u gunicorn and /var/log/nginx/error.log",
        )
    return checks.passed("logs", "recent_errors", "logs", "no errors logged during this walk")


def recent_log_lines(facts):
    """Errors of the last ten minutes, the walk's own included, shown with the first failing check."""
    lines = (facts.gunicorn.get("errors") or []) + ((facts.web.get("nginx") or {}).get("errors") or [])
    for found in facts.walk_logs.values():
        lines += found.get("gunicorn", []) + found.get("nginx", [])
    return list(dict.fromkeys(lines))
