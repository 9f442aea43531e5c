"""Reading nginx's configuration as `nginx -T` prints it."""

import re


def strip_comments(text):
    return re.sub(r"#[^\n]*", "", text or "")


def blocks(text, header):
    """The bodies of every `header { ... }` block (nested braces included)."""
    found = []
    for match in re.finditer(header + r"\s*\{", text):
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                found.append(text[start:index])
                break
    return found


def block(text, header):
    found = blocks(text, header)
    return found[0] if found else None


def upstream_servers(body):
    """The servers of an upstream block, each once (a backup line repeats a server for retries)."""
    return list(dict.fromkeys(re.findall(r"\bserver\s+([^\s;]+)", body or "")))


def tls_server(text):
    """server_name, port and certificate of the first server that serves TLS: one that listens
    with ssl and does not refuse every handshake (the catch-all that stands in for a default site)."""
    for body in blocks(text, r"\bserver"):
        listen = re.search(r"listen\s+\S*?(\d+)\s+[^;]*\bssl\b", body)
        if listen and not re.search(r"ssl_reject_handshake\s+on\s*;", body):
            name = re.search(r"server_name\s+([^\s;]+)", body)
            cert = re.search(r"ssl_certificate\s+([^;]+);", body)
            return {
                "server_name": name.group(1) if name else None,
                "port": int(listen.group(1)),
                "certificate": cert.group(1).strip() if cert else None,
                "body": body,
            }
    return None
