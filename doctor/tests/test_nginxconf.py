"""Reading nginx's configuration as `nginx -T` prints it."""

from conftest import HEALTHY

from doctor.nginxconf import block, blocks, strip_comments, tls_server, upstream_servers

DEPLOYED = strip_comments(HEALTHY["host"]["nginx"]["dump"])


def test_comments_go_and_directives_stay():
    assert strip_comments("listen 443 ssl; # the public port\n# all of this\nserver_name a;") == (
        "listen 443 ssl; \n\nserver_name a;"
    )


def test_a_block_holds_its_nested_blocks():
    text = "http { server { location /ws/ { proxy_pass x; } } } events { }"
    assert block(text, r"\bhttp") == " server { location /ws/ { proxy_pass x; } } "
    assert blocks(text, r"location\s+/ws/") == [" proxy_pass x; "]
    assert block(text, r"upstream\s+django_asgi") is None


def test_the_tls_server_is_the_one_that_serves_not_the_catch_all():
    server = tls_server(DEPLOYED)
    assert (server["server_name"], server["port"], server["certificate"]) == (
        "localhost",
        443,
        "/etc/ssl/nurcrm/fullchain.pem",
    )
    assert tls_server("server { listen 443 ssl; ssl_reject_handshake on; }") is None


def test_upstream_servers_are_listed_once_in_order_without_their_parameters():
    body = block(DEPLOYED, r"upstream\s+django_asgi")
    assert upstream_servers(body) == ["unix:/home/nur/asgi.sock"]  # the backups repeat it
    assert upstream_servers("server 10.0.0.2:8000 max_fails=3; server 10.0.0.1:8000 down;") == [
        "10.0.0.2:8000",
        "10.0.0.1:8000",
    ]
