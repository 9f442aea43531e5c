"""Steps consumer, groups, delivery and logs: the checklist's acceptance, through the public URL with a token
minted on an app host, then what the walk left in the logs."""

import re

from doctor.registry import check, fail, ok, skip


@check("consumer", "consumer", needs=["handshake_upgrades"])
def consumer_accepts_token(f):
    """A socket with a minted JWT gets connection_established, and pong for ping."""
    s, minted = f.session, f.on(f.session_host).probe
    if f.on(f.session_host).unreachable:  # no app host answered (or it stopped during the walk)
        return skip(f"needs {f.session_host} to answer")
    if blind := f.on(f.session_host).blind:
        return skip(f"no token minted on {f.session_host}: {blind}")
    if not minted.get("token"):
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


@check("groups", "groups", needs=["consumer_accepts_token"])
def group_exists(f):
    """The socket's group (cafe_tables_<company>) appears in Redis."""
    send = f.session.get("send") or {}
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


@check("delivery", "delivery", needs=["group_exists"])
def delivery(f):
    """A table_status_changed sent by the app's own sender reaches the socket."""
    s = f.session
    if s.get("event"):
        return ok(
            f"table_status_changed arrived {s['event_ms']} ms after send_test_notification started "
            f"(includes its start-up); socket ping round trip {s.get('pong_ms')} ms"
        )
    return fail(
        "send_test_notification ran but the socket received nothing in 10 s",
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
