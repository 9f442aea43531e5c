"""The bundle's nginx site as the nginx role writes it (roles/nginx/templates/nurcrm.conf.j2, rendered by Ansible
itself): the project's own locations, and a `/` of its own in place of the bundle's catch-all, as a takeover
carries a hand-made site's frontend over (docs/takeover.md, "Every location kept")."""

import re

from tests import rendering

WIRING = {
    "nginx_server_name": "app.nurcrm.kg",
    "nginx_upstream_servers": ["unix:/run/gunicorn/asgi.sock"],
    "nginx_static_root": "/opt/nurcrm/static",
    "nginx_media_root": "",
    "nginx_proxy_bind": "",
    "__nginx_certificate": "/etc/ssl/nurcrm/fullchain.pem",
    "__nginx_certificate_key": "/etc/ssl/nurcrm/privkey.pem",
}


def tls_locations(tmp_path, **variables):
    """{location: its body} of the TLS server, in order."""
    site = rendering.render(tmp_path, "nginx", "nurcrm.conf.j2", **WIRING, **variables).read_text()
    tls = next(server for server in site.split("\nserver {") if "ssl_certificate " in server)
    return dict(re.findall(r"^    location ([^{]+?) \{\n(.*?)^    \}", tls, re.M | re.S))


def test_by_default_the_bundles_catch_all_proxies_everything_to_the_app(tmp_path):
    locations = tls_locations(tmp_path)
    assert list(locations) == ["/ws/", "/static/", "= /api/auth/token/", "@nurcrm_slow_down", "/"]
    assert "proxy_pass http://django_asgi;" in locations["/"]


def test_a_carried_root_replaces_the_catch_all_and_the_app_answers_what_is_carried_to_it(tmp_path):
    frontend = {"location": "/", "directives": ["root /var/www/nurcrm-frontend", "try_files $uri /index.html"]}
    locations = tls_locations(tmp_path, nginx_extra_locations=[frontend, {"location": "/api/", "proxy": True}])
    assert list(locations) == ["/ws/", "/static/", "/", "/api/", "= /api/auth/token/", "@nurcrm_slow_down"]
    assert "root /var/www/nurcrm-frontend;" in locations["/"] and "proxy_pass" not in locations["/"]
    assert "try_files $uri /index.html;" in locations["/"]
    for proxied in ("/api/", "= /api/auth/token/", "/ws/"):
        assert "proxy_pass http://django_asgi" in locations[proxied], proxied
