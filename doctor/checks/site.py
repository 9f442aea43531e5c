"""Steps consumer, groups, delivery and logs: the checklist's acceptance, through the public URL with a token
minted on an app host, then what the walk left in the logs."""

import re

from doctor.registry import check, fail, ok, skip


def has_token(f):
    """Only with a token (minted where the bundle deployed the app host; else given, or printed by the operator's
    command): the socket joins its company's group."""
    return bool(f.session.get("token")) or f.on(f.session_host).managed


def _without_token(f):
    """A socket without a token, on a host the bundle did not deploy: any answer of the consumer proves the path
    from the client through nginx and gunicorn to it."""
    s, why = f.session, f.on(f.session_host).probe.get("token_error") or "no token source"
    after = f"; {why}: groups and delivery are not checked"
    if s.get("close_code") and s["close_code"] >= 4000:
        return ok(
            f"the consumer closed a socket without a token with {s['close_code']} ({s.get('close_reason')}){after}"
        )
    if s.get("hello"):
        return ok(f"the consumer answered a socket without a token: {str(s['hello'])[:120]}{after}")
    answered = f"HTTP {s['http_status']}" if s.get("http_status") else s.get("error") or f"close {s.get('close_code')}"
    return fail(f"a socket without a token got {answered}, not the consumer's answer", "the logs below say more")


@check("consumer", "consumer", needs=["handshake_upgrades"])
def consumer_accepts_token(f):
    """A socket with a minted JWT gets connection_established, and pong for ping."""
    s, minted = f.session, f.on(f.session_host).probe
    if f.on(f.session_host).unreachable:  # no app host answered (or it stopped during the walk)
        return skip(f"needs {f.session_host} to answer")
    if blind := f.on(f.session_host).blind:
        return skip(f"no token minted on {f.session_host}: {blind}")
    if (
        not s.get("token")
        and not f.on(f.session_host).managed
        and not minted.get("token_error", "").startswith("the token command failed")
    ):
        return _without_token(f)
    if not minted.get("token") and not f.token_given:
        return fail(
            f"no token could be minted on {f.session_host}: {minted.get('token_error')}",
            "`nurcrm-manage issue_token --user <user>` must work on the app host: create the doctor's user "
            "(doctor_user) in a company, or pass --user",
            layer="auth",
            manual=True,
        )
    if (s.get("hello") or {}).get("type") == "connection_established":
        return ok(
            f"connection_established with {len(s['hello'].get('tables', []))} tables; "
            f"ping -> pong in {s.get('pong_ms')} ms"
        )
    if s.get("close_code") == 4401:
        return fail(
            f"closed 4401 ({s.get('close_reason')}) for a token minted on {f.session_host} just now",
            "writes back JWT_ACCESS_TTL and JWT_SIGNING_KEY, one for manage.py and gunicorn, and restarts; "
            "a wrong host clock (timedatectl) no playbook fixes",
            layer="auth",
            hosts=[f.session_host],
        )
    if s.get("close_code"):
        return fail(
            f"closed {s['close_code']} ({s.get('close_reason')})",
            "writes back the code; 4403 means the doctor's user needs a company (no playbook makes one)",
        )
    answered = f"the handshake with a token answered HTTP {s['http_status']}" if s.get("http_status") else ""
    return fail(
        f"no connection_established: {answered}{s.get('error') or s.get('hello') or ''}",
        "writes back the code and restarts gunicorn; the logs below say more",
    )


def _groups_of_a_stranger(f):
    """On a host the bundle did not deploy: the groups the note's sender used, and those the doctor's socket joined
    (the layer's groups in Redis that gained a member once it connected)."""
    send, host = f.session.get("send") or {}, f.on(f.session_host)
    if send.get("rc") != 0:
        return fail(
            f"the production note's test send ({send.get('sender')}) failed on {f.session_host}: {send.get('err')}",
            "the sender must run in `manage.py shell` as the app's user; the error names what it lacks",
            layer="delivery",
        )
    sent = sorted({each["group"] for each in send.get("sent") or []})
    before, now = (host.gunicorn.get("django") or {}).get("groups") or {}, send.get("groups") or {}
    joined = sorted(group for group, members in now.items() if members > before.get(group, 0))
    if set(sent) & {group for group, members in now.items() if members}:
        return ok(f"the sender sent to {sent}; the doctor's socket joined {joined or sent}")
    return fail(
        f"the doctor's socket joined {joined or 'no group that gained a member'}; the sender "
        f"({send.get('sender')}) sent to {sent or 'no group'}; groups in Redis: {dict(list(now.items())[:8])}",
        "sender and consumer must build the group name in one function (cafe_tables_<company>, plus _<branch_id> "
        "when the socket gives one); restart gunicorn after the change",
    )


@check("groups", "groups", needs=["consumer_accepts_token"], when=has_token)
def group_exists(f):
    """The socket's group (cafe_tables_<company>) appears in Redis, and the sender sends to it."""
    send = f.session.get("send") or {}
    if not f.on(f.session_host).managed or send.get("sender"):  # the note's sender ran (probe.send_as_app)
        return _groups_of_a_stranger(f)
    if send.get("rc") != 0:
        return fail(
            f"send_test_notification failed on {f.session_host}: {send.get('err', '').strip().splitlines()[-1:]}",
            "writes back the app's settings; Redis must be reachable from manage.py",
            layer="delivery",
        )
    company = f.session["hello"]["company_id"]
    group = f"cafe_tables_{company}"
    line = next((ln.strip() for ln in send["out"].splitlines() if ln.strip().startswith(group + ":")), "")
    count = re.match(rf"{group}: (\d+|\?)", line)
    how = re.search(r"\[(.*)\]", line)
    if count and count.group(1) not in ("?", "0"):
        return ok(f"{line.split('[')[0].strip()} [{how.group(1) if how else ''}]")
    return fail(
        f"a socket of company {company} is open, yet {group} has no member ({how.group(1) if how else line}); "
        f"group keys of this company in Redis: {send.get('group_keys') or []}",
        "writes back the code: sender and consumer build the group name in apps/cafe/groups.py alone",
    )


@check("delivery", "delivery", needs=["group_exists"], when=has_token)
def delivery(f):
    """A table_status_changed sent by the app's own sender reaches the socket."""
    s = f.session
    sender = (s.get("send") or {}).get("sender") or "send_test_notification"
    if s.get("event"):
        return ok(
            f"table_status_changed arrived {s['event_ms']} ms after {sender} started "
            f"(includes its start-up); socket ping round trip {s.get('pong_ms')} ms"
        )
    return fail(
        f"{sender} ran but the socket received nothing in 5 s",
        "writes back the app; every worker and manage.py must share one Redis layer and group names (steps redis, "
        "django, groups)",
    )


@check("logs", "logs", on=("web", "app"))
def recent_errors(h):
    """gunicorn and nginx logged no error during the walk."""
    logged = h.walk_logs.get(h.name) or {}
    lines = (logged.get("gunicorn") or []) + (logged.get("nginx") or [])
    if lines:
        return fail(
            f"{len(lines)} error line(s) logged during this walk; last: {lines[-1]}",
            f"they name the layer: journalctl -u gunicorn, /var/log/nginx/error.log and access.log's 5xx on {h.name}",
            manual=True,
        )
    return ok("no errors logged by gunicorn or nginx during this walk")
