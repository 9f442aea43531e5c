"""The doctor's checks, declared once: each registers its step, layer, hosts and prerequisites.

A check body judges facts and returns `ok(evidence)` or `fail(evidence, explanation)`; the
registry stamps the check's name (its function's), step, layer and host into every Result, runs
the checks in the order they were registered (steps in the checklist's order), skips a check
whose prerequisite did not pass, gives no result for a check that does not apply to the layout
(`when`: Sentinel's checks on a standalone Redis), and turns each failure's layer into the
bundle's own rerun:
`ansible-playbook playbooks/<layer>.yml -i <inventory> --limit <host>`.

A host that did not answer is judged here, not by the check bodies: the first check of its groups
fails saying so (no playbook reaches it), the others on it are skipped, and that failure is the
first to fix (`first_failure`).
"""

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = "site"  # the scope of checks made from the client's side, through the public URL


@dataclass(frozen=True)
class Step:
    name: str
    item: int  # the production checklist's item that the step proves (molecule/default/tests/test_<item>_*.py)


# The walk's order. Items: 1 nginx, 2 ASGI server, 3 Redis, 4 Django, 5-8 failure suspects to acceptance.
STEPS = [
    Step("tls", 1),
    Step("nginx", 1),
    Step("handshake", 1),
    Step("gunicorn", 2),
    Step("redis", 3),
    Step("database", 4),
    Step("django", 4),
    Step("consumer", 8),
    Step("groups", 3),
    Step("delivery", 8),
    Step("logs", 5),
]
STEP_INDEX = {step.name: index for index, step in enumerate(STEPS)}


@dataclass(frozen=True)
class Layer:
    group: str | None  # the inventory group whose hosts run it
    playbook: str | None  # the playbook that restores it from the inventory; None: no playbook can


HOST = "host"  # the layer of a host that did not answer: the machine itself, or the connection to it
LAYERS = {
    "tls": Layer("web", None),
    "nginx": Layer("web", "playbooks/nginx.yml"),
    "gunicorn": Layer("app", "playbooks/asgi.yml"),
    "redis": Layer("redis", "playbooks/redis.yml"),
    "postgresql": Layer("db", "playbooks/postgresql.yml"),
    "django": Layer("app", "playbooks/app.yml"),
    "auth": Layer("app", "playbooks/app.yml"),
    "consumer": Layer("app", "playbooks/app.yml"),
    "groups": Layer("app", "playbooks/app.yml"),
    "delivery": Layer("app", "playbooks/app.yml"),
    "logs": Layer(None, None),
    HOST: Layer(None, None),
}


@dataclass(frozen=True)
class Check:
    func: object
    step: str
    layer: str
    scope: tuple  # the inventory groups whose every host it runs on, or (SITE,): once, from the client's side
    needs: tuple  # names of earlier checks that must pass first (same host, or from the client's side)
    compares: bool = False  # one result for the whole group: its hosts must agree
    when: object = None  # a test of the walk's facts: where it is false the check does not apply (no result)
    only: object = None  # a test of one host's facts: the hosts where it is false get no result

    @property
    def name(self):
        return self.func.__name__

    @property
    def proves(self):
        """What a pass proves: the first paragraph of the check's docstring, on one line."""
        return " ".join((self.func.__doc__ or "").strip().split("\n\n")[0].split())

    @property
    def where(self):
        """Where it runs, as an operator reads it."""
        if self.scope == (SITE,):
            return "from the client"
        where = f"{'across' if self.compares else 'on'} every {' and '.join(self.scope)} host"
        when = (self.when.__doc__ or "").split(":")[0]  # "Only under Sentinel: ..."
        where = f"{where}, {when[:1].lower()}{when[1:]}" if when else where
        only = (self.only.__doc__ or "").split(":")[0]  # "Only where the bundle deployed the host: ..."
        return f"{where}, {only[:1].lower()}{only[1:]}" if only else where

    @property
    def fixed_by(self):
        """What restores the layer when the check fails (a check may name another layer's, or say what to do)."""
        return LAYERS[self.layer].playbook or "the operator (no playbook restores it)"


REGISTRY = []  # in walk order


def listing():
    """Every registered check, in walk order, as `nurcrm-doctor --list` prints it (and docs/doctor.md shows it)."""
    out = []
    for step in STEPS:
        checks = [c for c in REGISTRY if c.step == step.name]
        out.append(f"{step.name} (checklist item {step.item})")
        for c in checks:
            out += [f"  {c.name}: {c.proves}", f"      {c.where}; layer {c.layer}; fixed by {c.fixed_by}"]
    return "\n".join(out)


def check(step, layer, on=SITE, needs=(), compares=False, when=None, only=None):
    """Register a check. `on`: a group ("app"), several ("web", "app"), or SITE for the client's side;
    `when(facts)`: whether the deployment has what it checks (no result where it has not); `only(host)`: the
    same for one host of `on` (a host that did not answer gets none: its first check says so)."""
    scope = (on,) if isinstance(on, str) else tuple(on)
    known = {c.name: c for c in REGISTRY}
    for need in needs:
        assert need in known, f"{need} must be registered before what needs it"
        assert known[need].scope in (scope, (SITE,)) and not known[need].compares, f"{need}: not on the same hosts"
    assert only is None or (scope != (SITE,) and not compares), "only: a test of one host"
    assert step in STEP_INDEX and layer in LAYERS, (step, layer)

    def register(func):
        REGISTRY.append(Check(func, step, layer, scope, tuple(needs), compares, when, only))
        REGISTRY.sort(key=lambda c: STEP_INDEX[c.step])  # stable: registration order within a step
        return func

    return register


@dataclass
class Verdict:
    """What a check body returns. On a failure: the explanation of the fix; the broken layer if not the
    check's own; `by`, the layer whose playbook restores it if not the broken one (a gunicorn hook can
    split the workers' Redis); the hosts to rerun it on if not the ones the layer's group implies; or
    manual=True when no playbook restores it (the explanation then says what the operator must do)."""

    ok: bool | None  # None: not judged (skipped, the evidence says why)
    evidence: str
    explanation: str = ""
    layer: str | None = None
    by: str | None = None
    hosts: tuple = ()
    manual: bool = False


def ok(evidence):
    return Verdict(True, evidence)


def skip(why):
    return Verdict(None, why)


def fail(evidence, explanation, layer=None, by=None, hosts=(), manual=False):
    return Verdict(False, evidence, explanation, layer, by, tuple(hosts), manual)


def unanswered(facts, names, seen=""):
    """The failure of those of these hosts that did not answer (after `seen`, what was seen through them), or
    None when they all answered: restoring them comes first."""
    silent = {name: why for name, why in facts.silent(*facts.groups).items() if name in names}
    if not silent:
        return None
    told = "; ".join(f"{name} does not answer: {why}" for name, why in silent.items())
    them = "its" if len(silent) == 1 else "their"
    return fail(
        f"{seen}; {told}" if seen else told,
        f"start {', '.join(silent)} (or restore {them} connection); then rerun nurcrm-doctor -i {facts.inventory}",
        layer=HOST,
        manual=True,
    )


def unheard(facts, *groups):
    """What evidence judged without the hosts of these groups that did not answer adds ("; app2 does not answer")."""
    silent = facts.silent(*groups)
    return f"; {', '.join(silent)} {'does' if len(silent) == 1 else 'do'} not answer" if silent else ""


@dataclass
class Rerun:
    """The bundle's own fix: one layer's playbook, on the hosts it runs on."""

    playbook: str
    limit: str
    inventory: str

    def argv(self, check_mode=False):
        argv = ["ansible-playbook", self.playbook, "-i", self.inventory, "--limit", self.limit]
        return argv + (["--check", "--diff"] if check_mode else [])

    def command(self):
        """The command as an operator types it, from where they stand."""
        here = Path.cwd().resolve()
        if here == ROOT:
            return shlex.join(self.argv())
        inventory = str(Path(self.inventory).resolve())
        return f"cd {shlex.quote(str(ROOT))} && " + shlex.join([*self.argv()[:3], inventory, *self.argv()[4:]])


@dataclass
class Result:
    step: str
    check: str
    status: str  # pass | fail | skip
    layer: str
    host: str  # where it was judged: an inventory host, the public name (client's side), or a group's hosts
    evidence: str = ""
    fix: str = ""  # starts with the command that restores the layer, or says that none does
    rerun: dict | None = None  # {"playbook", "limit", "inventory"}: what --fix runs

    @property
    def ok(self):
        return self.status == "pass"


def hosts_of(check, facts):
    """The hosts a check runs on: one result each, or one for a comparison or the client's side; none where
    it does not apply."""
    if check.when and not check.when(facts):
        return []
    if check.scope == (SITE,):
        return [facts.site.server_name if facts.site else SITE]
    names = facts.names(*check.scope)
    if check.only:
        names = [n for n in names if not facts.on(n).unreachable and check.only(facts.on(n))]
    return [",".join(names)] if check.compares and names else names


def evaluate(facts, checks=None):
    """Every registered check (or those given) on each of its hosts, in walk order."""
    results, by_key, told = [], {}, set()
    for registered in checks or REGISTRY:
        for host in hosts_of(registered, facts):
            by_key[registered.name, host] = _run(registered, host, facts, by_key, told)
            results.append(by_key[registered.name, host])
    return results


def first_failure(results, facts):
    """The failure to fix first: a host that did not answer (what is judged through it may fail for that alone,
    and no playbook reaches it), else the first failure in walk order; None when every check passes."""
    failures = [r for r in results if r.status == "fail"]
    silent = facts.silent(*facts.groups)
    return next((r for r in failures if r.host in silent), next(iter(failures), None))


def _judge(registered, host, facts, by_key, told):
    """The check's verdict on `host`, unless the host did not answer, a prerequisite did not pass, or the host
    was seen without root."""
    on_hosts = registered.scope != (SITE,)
    if on_hosts and not registered.compares and facts.on(host).unreachable:
        if host in told:
            return skip(f"needs {host} to answer")
        told.add(host)  # its first check says so
        return unanswered(facts, [host])
    for need in registered.needs:
        # A need is on the same host, or on the client's side (one result).
        before = by_key.get((need, host)) or next((r for (n, _), r in by_key.items() if n == need), None)
        if before is not None and not before.ok:
            return skip(f"needs {need}, which {'failed' if before.status == 'fail' else 'was skipped'}")
    # A host the probe saw without root: nothing judged on it is evidence (a comparison neither).
    if on_hosts and (blind := next(filter(None, (facts.on(n).blind for n in host.split(","))), "")):
        return skip(blind)
    return registered.func(facts if not on_hosts or registered.compares else facts.on(host))


def _run(registered, host, facts, by_key, told):
    stamp = {"step": registered.step, "check": registered.name, "host": host}
    verdict = _judge(registered, host, facts, by_key, told)
    if verdict.ok is None:
        return Result(status="skip", layer=registered.layer, evidence=verdict.evidence, **stamp)
    if verdict.ok:
        return Result(status="pass", layer=registered.layer, evidence=verdict.evidence, **stamp)
    layer = verdict.layer or registered.layer
    rerun = _rerun(verdict.by or layer, host, verdict, facts)
    if rerun:
        fix = f"{rerun.command()}  # {verdict.explanation}"
    elif (strangers := unmanaged(facts, host, verdict, verdict.by or layer)) and not verdict.manual:
        fix = (
            f"by hand: {', '.join(strangers)} {'was' if len(strangers) == 1 else 'were'} not deployed by the bundle, "
            f"so no playbook of it is offered ({TAKEOVER.replace('<inventory>', facts.inventory)}); what the "
            f"bundle's would do: {verdict.explanation}"
        )
    else:
        fix = f"no playbook restores this: {verdict.explanation}"
    return Result(
        status="fail",
        layer=layer,
        evidence=verdict.evidence,
        fix=fix,
        rerun=asdict(rerun) if rerun else None,
        **stamp,
    )


def _targets(layer, host, verdict, facts):
    """The hosts a layer's playbook would run on for this failure: the check's own host when it is one of them."""
    group = facts.names(LAYERS[layer].group) if LAYERS[layer].group else []
    hosts = list(verdict.hosts) or [h for h in host.split(",") if h in group] or group
    # A playbook cannot reach a host that did not answer: leave it out, unless that leaves none.
    return [h for h in hosts if not facts.on(h).unreachable] or hosts


def unmanaged(facts, host, verdict, layer):
    """The hosts this failure's rerun would reach that the bundle did not deploy (its playbooks would replace
    what is there)."""
    return _strangers(facts, _targets(layer, host, verdict, facts) if LAYERS[layer].group else host.split(","))


def _strangers(facts, hosts):
    """Those of these hosts that answered and that the bundle did not deploy."""
    return [h for h in hosts if h in facts.hosts and not facts.on(h).unreachable and not facts.on(h).managed]


# Where a host the bundle did not deploy is taken over (docs/takeover.md): its plan first, changing nothing.
TAKEOVER = "ansible-playbook site.yml -i <inventory> --check --diff shows what taking it over would change"


def _rerun(layer, host, verdict, facts):
    """The layer's playbook on the hosts that run it, if the bundle deployed them all."""
    spec = LAYERS[layer]
    if verdict.manual or not spec.playbook:
        return None
    hosts = _targets(layer, host, verdict, facts)
    if _strangers(facts, hosts):
        return None
    return Rerun(spec.playbook, ",".join(hosts), facts.inventory)
