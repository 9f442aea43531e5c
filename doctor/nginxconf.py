"""nginx's configuration as `nginx -T` prints it, parsed by crossplane (nginx's own grammar, on the controller)
into what the checks judge: the maps, the upstreams, the servers and the location that serves a path, with each
directive's value as nginx inherits it.

`nginx -T` prints every file it loads after a `# configuration file <path>:` line. Each is parsed alone, and
each `include` is replaced by the files it names, as nginx does: the configuration is never read from this
machine's own /etc/nginx.
"""

import fnmatch
import os
import re
import tempfile
from dataclasses import dataclass, field

import crossplane

FILE_MARK = re.compile(r"^# configuration file (\S+):$", re.M)
PREFIX = "/etc/nginx"  # where a relative include is looked up (nginx's --prefix on Debian)
MAX_INCLUDE_DEPTH = 10


def files(dump):
    """{path: text} of every file a dump holds, in its order."""
    marks = list(FILE_MARK.finditer(dump or ""))
    return {
        mark.group(1): dump[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else len(dump)]
        for i, mark in enumerate(marks)
    }


class ParseError(Exception):
    """The dump is not nginx's grammar (nginx -t says more)."""


def _parse_one(name, text):
    """One file's directives (crossplane's form: directive, args, block), or ParseError naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "nginx.conf")
        with open(path, "w") as f:
            f.write(text)
        parsed = crossplane.parse(path, single=True, check_ctx=False, check_args=False)
    errors = parsed["config"][0]["errors"]
    if errors:
        raise ParseError(f"{name}: {errors[0]['error'].split(' in ' + path)[0]} (line {errors[0]['line']})")
    return parsed["config"][0]["parsed"]


def parse(dump):
    """The directives of the dump's first file (nginx.conf), each include replaced by what it names."""
    texts = files(dump)
    if not texts:
        return []
    parsed = {path: _parse_one(path, text) for path, text in texts.items()}

    def spliced(directives, depth):
        out = []
        for d in directives:
            if d["directive"] == "include" and d["args"] and depth < MAX_INCLUDE_DEPTH:
                pattern = d["args"][0] if d["args"][0].startswith("/") else f"{PREFIX}/{d['args'][0]}"
                for path in sorted(p for p in parsed if fnmatch.fnmatch(p, pattern)):
                    out += spliced(parsed[path], depth + 1)
                continue
            if "block" in d:
                d = {**d, "block": spliced(d["block"], depth)}
            out.append(d)
        return out

    return spliced(next(iter(parsed.values())), 0)


def find(directives, name):
    return [d for d in directives or [] if d["directive"] == name]


def value(directives, name):
    """The args of the last `name` directive in this block, or None."""
    found = find(directives, name)
    return found[-1]["args"] if found else None


@dataclass
class Location:
    modifier: str  # "", "=", "^~", "~", "~*"
    path: str
    directives: list
    server: "Server"

    def inherited(self, name):
        """A directive's args as nginx applies it here: this location's, else its server's, else http's."""
        for level in (self.directives, self.server.directives, self.server.http):
            if (found := value(level, name)) is not None:
                return found
        return None

    def headers(self):
        """proxy_set_header as nginx applies it here: the nearest level that sets any, whole (nginx inherits
        proxy_set_header only into a level that sets none) -> {lowercased name: value}."""
        for level in (self.directives, self.server.directives, self.server.http):
            found = find(level, "proxy_set_header")
            if found:
                return {d["args"][0].lower(): " ".join(d["args"][1:]) for d in found if d["args"]}
        return {}


@dataclass
class Server:
    directives: list
    http: list  # the http block's own directives (what a server inherits)

    @property
    def names(self):
        return [n for d in find(self.directives, "server_name") for n in d["args"]]

    @property
    def tls_port(self):
        """The port it serves TLS on, or None (a plain-HTTP server, or the catch-all that refuses handshakes)."""
        if (value(self.directives, "ssl_reject_handshake") or [""])[0] == "on":
            return None
        for d in find(self.directives, "listen"):
            if "ssl" in d["args"][1:]:
                return int(re.search(r"(\d+)$", d["args"][0]).group(1)) if re.search(r"\d+$", d["args"][0]) else 443
        return None

    @property
    def certificate(self):
        found = value(self.directives, "ssl_certificate") or value(self.http, "ssl_certificate")
        return found[0] if found else None

    def locations(self):
        found = []

        def walk(directives):
            for d in find(directives, "location"):
                args = d["args"]
                modifier, path = (args[0], args[1]) if len(args) > 1 else ("", args[0])
                found.append(Location(modifier, path, d.get("block") or [], self))
                walk(d.get("block"))

        walk(self.directives)
        return found

    def location(self, uri):
        """The location nginx picks for a request URI: an exact match, else the longest prefix (final with ^~),
        else the first regular expression that matches, else that prefix. None when none does."""
        locations = self.locations()
        for loc in locations:
            if loc.modifier == "=" and loc.path == uri:
                return loc
        prefixes = [loc for loc in locations if loc.modifier in ("", "^~") and uri.startswith(loc.path)]
        longest = max(prefixes, key=lambda loc: len(loc.path), default=None)
        if longest is not None and longest.modifier == "^~":
            return longest
        for loc in locations:
            if loc.modifier in ("~", "~*"):
                flags = re.I if loc.modifier == "~*" else 0
                if re.search(loc.path, uri, flags):
                    return loc
        return longest


@dataclass
class Config:
    directives: list = field(default_factory=list)
    error: str | None = None  # why the dump could not be parsed

    @classmethod
    def of(cls, dump):
        try:
            return cls(parse(dump))
        except ParseError as exc:
            return cls([], str(exc))

    @property
    def http(self):
        block = find(self.directives, "http")
        return block[0].get("block", []) if block else []

    def maps(self):
        """$variable -> (the source it maps, {key: value})."""
        found = {}
        for d in find(self.http, "map"):
            if len(d["args"]) == 2:
                pairs = {e["directive"]: " ".join(e["args"]) for e in d.get("block") or []}
                found[d["args"][1]] = (d["args"][0], pairs)
        return found

    def upstreams(self):
        """name -> its servers, each once (a backup line repeats a server for retries), without parameters."""
        return {
            d["args"][0]: list(dict.fromkeys(s["args"][0] for s in find(d.get("block"), "server") if s["args"]))
            for d in find(self.http, "upstream")
            if d["args"]
        }

    def servers(self):
        return [Server(d.get("block") or [], self.http) for d in find(self.http, "server")]

    def tls_server(self, name=None):
        """The server that serves TLS for `name` (or the first that serves TLS at all)."""
        serving = [s for s in self.servers() if s.tls_port]
        return next((s for s in serving if name in s.names), None) or next(iter(serving), None)

    def proxy_bind(self):
        """Every address proxy_bind names, at any level."""
        found = set()

        def walk(directives):
            for d in directives:
                if d["directive"] == "proxy_bind" and d["args"]:
                    found.add(d["args"][0])
                walk(d.get("block") or [])

        walk(self.http)
        return found


def proxy_target(location, config):
    """Where a location proxies to: (what proxy_pass names, the servers that are behind it). `http://NAME` is an
    upstream's servers, `http://unix:/path:` a socket, `http://host:port` an address. (None, []) without
    proxy_pass."""
    args = location.inherited("proxy_pass") if location else None
    if not args:
        return None, []
    target = re.sub(r"^https?://", "", args[0])
    if target.startswith("unix:"):
        return args[0], [":".join(target.split(":", 2)[:2])]  # unix:/path[:/uri]
    name = target.split("/", 1)[0]
    upstreams = config.upstreams()
    return args[0], upstreams.get(name, [name if ":" in name else f"{name}:80"])
