"""The walk: probe every host in parallel, take the client's view, then judge (doctor/registry.py)."""

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from doctor import checks  # noqa: F401 (importing it registers the checks)
from doctor.facts import Facts
from doctor.hosts import Hosts, Unreachable, rendered, role_default
from doctor.registry import evaluate
from doctor.site import WS_PATH, Site, handshake, session, tls_facts

SERVICE = "gunicorn"  # the production note's unit; a server whose gunicorn is another: --unit, or doctor_unit
LOG_WINDOW = 600  # seconds of logs shown beside the first failing check


def option(given, hosts, name, default=None):
    """An option as given on the command line, else the inventory's variable of the first app host, else the
    default (the production note's value)."""
    return given or rendered(hosts.variables(hosts.groups["app"][0]), name) or default


def _each(names, probe):
    """probe(name) on every host at once: name -> its answer, or the Unreachable it raised."""

    def answer(name):
        try:
            return probe(name)
        except Unreachable as silent:
            return silent

    with ThreadPoolExecutor(max(1, len(names))) as pool:
        return dict(zip(names, pool.map(answer, names), strict=True))


def _silence(facts, silent):
    """A host that does not answer: what its transport said replaces its facts (doctor/registry.py judges it)."""
    facts.hosts[silent.host] = {"unreachable": silent.reason}


def gather(
    inventory, user=None, origin=None, sudo=False, token_ttl=None, ws_path=None, unit=None, token_command=None,
    token=None,
):  # fmt: skip
    """Facts of every host of every group, and the client's view; nothing on the hosts is changed. A host that
    does not answer is recorded as such; when none answers, the first one's Unreachable is raised.

    The token the walk's socket signs in with: `token` as given, else what `token_command` prints on the app host,
    else (where the bundle deployed it) one minted for `user`; without any, the socket goes without one and the
    checks that need one do not apply."""
    hosts = Hosts(inventory, sudo=sudo)
    names = hosts.names()
    # One app host mints the token and runs the sender (the first; if it does not answer, the first that does);
    # the event reaches the socket wherever it is.
    session_host = hosts.groups["app"][0]
    user = option(user, hosts, "doctor_user", "demo")
    service = option(unit, hosts, "doctor_unit", SERVICE)
    token_command = option(token_command, hosts, "doctor_token_command")
    minting = {"token_user": user, "token_args": ["--ttl", str(token_ttl)] if token_ttl is not None else []}
    minting = {} if token else {**minting, "token_command": token_command}

    def probe(name):
        return hosts.probe(
            name,
            mode="facts",
            service=service,
            since_seconds=LOG_WINDOW,
            sample_seconds=1.0,
            **(minting if name == session_host else {}),
        )

    answers = _each(names, probe)
    silent = [answer for answer in answers.values() if isinstance(answer, Unreachable)]
    if len(silent) == len(answers):
        raise silent[0]  # no host answers: there is nothing to judge
    facts = Facts(inventory=str(inventory), groups=hosts.groups, hosts=answers)
    for answer in silent:
        _silence(facts, answer)
    facts.session_host = session_host
    if facts.on(session_host).unreachable and facts.answering("app"):
        facts.session_host = facts.answering("app")[0].name
        try:
            facts.hosts[facts.session_host] |= hosts.probe(facts.session_host, mode="token", service=service, **minting)
        except Unreachable as stopped:
            _silence(facts, stopped)
    facts.site = _site(hosts, facts, origin, option(ws_path, hosts, "doctor_ws_path", WS_PATH))
    facts.tls = tls_facts(facts.site)
    facts.handshake = handshake(facts.site)
    facts.token_given = bool(token)
    token = token or facts.on(facts.session_host).probe.get("token")
    company = rendered(hosts.variables(facts.session_host), "doctor_company")

    def send(hello):
        ids = {"company": hello.get("company_id") or hello.get("company") or company}
        try:
            return hosts.probe(facts.session_host, mode="send", service=service, **ids)
        except Unreachable as stopped:  # it stopped answering during the walk
            _silence(facts, stopped)
            return {"rc": None, "out": "", "err": str(stopped)}

    if not facts.tls.get("error"):
        facts.session = session(facts.site, token, send)

    def logs(name):
        return hosts.probe(name, mode="logs", service=service, position=facts.hosts[name]["log_position"])

    facts.walk_logs = _each([h.name for h in facts.answering("web", "app")], logs)
    for name, logged in list(facts.walk_logs.items()):
        if isinstance(logged, Unreachable):  # it stopped answering during the walk
            _silence(facts, facts.walk_logs.pop(name))
    return facts


def _site(hosts, facts, origin, ws_path):
    """The public name, as the first web host that answers serves it (else as the inventory names it), and how
    this client reaches and trusts it."""
    web = next(iter(facts.answering("web")), facts.of("web")[0])
    web_vars = hosts.variables(web.name)
    named = rendered(web_vars, "nginx_server_name")
    server = web.nginx_config.tls_server(named)
    port = int(rendered(web_vars, "nginx_https_port") or role_default("nginx", "nginx_https_port"))
    name = (server.names[0] if server and server.names and named not in server.names else named) or web.name
    # A self-signed certificate is trusted only where the inventory made it on purpose (the bundle's own
    # setting); doctor_cafile is a CA of the operator's (a test ACME server's, a company's own), else the
    # system's CA store (a public certificate, on a host the bundle did not deploy); doctor_connect_address
    # where the public name points from here (a web host behind a load balancer, a name not in DNS yet).
    pem = None
    default = role_default("nginx", "nginx_certificate_source") if web.managed else "public"
    if web_vars.get("nginx_certificate_source", default) == "self-signed" and server:
        pem = (web.nginx.get("certificates") or {}).get(server.certificate)
    return Site.trusting(
        name,
        server.tls_port if server else port,
        origin or f"https://{name}",
        pem,
        cafile=os.path.expanduser(web_vars["doctor_cafile"]) if web_vars.get("doctor_cafile") else None,
        address=web_vars.get("doctor_connect_address"),
        ws_path=ws_path,
    )


def walk(inventory, **options):
    """Gather, then every check in walk order: (facts, results)."""
    facts = gather(inventory, **options)
    return facts, evaluate(facts)


def measured(facts):
    """What the walk timed and read from the client's side, for the metrics (doctor/metrics.py): the socket's
    ping -> pong, the test notification's arrival after the sender started (its start-up included), and the
    served certificate's notAfter as unix time; None where the walk did not get that far."""
    session, not_after = facts.session or {}, facts.tls.get("not_after")
    return {
        "ping_seconds": session["pong_ms"] / 1000 if session.get("pong_ms") is not None else None,
        "delivery_seconds": session["event_ms"] / 1000 if session.get("event_ms") is not None else None,
        "certificate_expiry_timestamp_seconds": datetime.fromisoformat(not_after).timestamp() if not_after else None,
    }


def recent_log_lines(facts):
    """Errors of the last ten minutes on every web and app host, shown with the first failing check."""
    several = len(facts.names("web", "app")) > 1
    lines = []
    for h in facts.of("web", "app"):
        found = (h.gunicorn.get("errors") or []) + (h.nginx.get("errors") or [])
        found += sum((facts.walk_logs.get(h.name, {}).get(source) or [] for source in ("gunicorn", "nginx")), [])
        lines += [f"{h.name}: {line}" if several else line for line in dict.fromkeys(found)]
    return lines
