"""Reading nginx's configuration as `nginx -T` prints it: crossplane's parse of each file, the includes spliced
in, and what nginx makes of it (the TLS server, the location a path goes to, inherited headers, proxy targets)."""

from conftest import HEALTHY

from doctor.nginxconf import Config, files, proxy_target

DEPLOYED = Config.of(HEALTHY["host"]["nginx"]["dump"])

# A site set up by hand the way the production note's server is: Debian's nginx.conf including sites-enabled/*,
# the WebSocket location with a literal Connection "upgrade", a frontend at / and the API under /api/.
HAND_BUILT = """# configuration file /etc/nginx/nginx.conf:
user www-data;
events { worker_connections 768; }
http {
    proxy_set_header Host $host;  # inherited by a location that sets no header of its own
    include /etc/nginx/conf.d/*.conf;
    include /etc/nginx/sites-enabled/*;
}

# configuration file /etc/nginx/sites-enabled/nurcrm:
upstream crm { server unix:/srv/crm/run/gunicorn.sock fail_timeout=0; }
server { listen 80; server_name app.example.kg; return 301 https://$host$request_uri; }
server {
    listen 443 ssl http2;
    server_name app.example.kg www.app.example.kg;
    ssl_certificate /etc/letsencrypt/live/app.example.kg/fullchain.pem;
    location / { root /var/www/frontend; try_files $uri /index.html; }
    location /api/ { proxy_pass http://crm; }
    location ^~ /ws/ {
        proxy_pass http://crm;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_read_timeout 1h;
    }
    location ~* \\.(png|jpg)$ { expires 7d; }
}
"""


def test_each_file_of_the_dump_is_found_by_its_mark():
    assert list(files(HAND_BUILT)) == ["/etc/nginx/nginx.conf", "/etc/nginx/sites-enabled/nurcrm"]


def test_includes_are_spliced_from_the_dump_not_read_from_this_machine():
    config = Config.of(HAND_BUILT)
    assert config.error is None
    assert config.upstreams() == {"crm": ["unix:/srv/crm/run/gunicorn.sock"]}
    assert [s.names for s in config.servers()] == [["app.example.kg"], ["app.example.kg", "www.app.example.kg"]]


def test_the_tls_server_is_the_one_that_serves_not_the_catch_all():
    server = DEPLOYED.tls_server("localhost")
    assert (server.names, server.tls_port, server.certificate) == (
        ["localhost"],
        443,
        "/etc/ssl/nurcrm/fullchain.pem",
    )
    assert Config.of("# configuration file /e/n.conf:\nhttp { server { listen 443 ssl; ssl_reject_handshake on; } }")
    assert (
        Config.of(
            "# configuration file /e/n.conf:\nhttp { server { listen 443 ssl; ssl_reject_handshake on; } }"
        ).tls_server()
        is None
    )


def test_the_location_of_a_path_is_the_one_nginx_picks():
    server = Config.of(HAND_BUILT).tls_server("app.example.kg")
    assert server.location("/ws/cafe/tables/").path == "/ws/"
    assert server.location("/api/cafe/tables/").path == "/api/"
    assert server.location("/menu.png").path == "\\.(png|jpg)$"  # a regular expression beats a short prefix
    assert server.location("/ws/x.png").path == "/ws/"  # ^~ stops the search
    assert server.location("/anything").path == "/"


def test_headers_are_inherited_only_into_a_level_that_sets_none():
    server = Config.of(HAND_BUILT).tls_server()
    assert server.location("/api/").headers() == {"host": "$host"}  # from http
    assert server.location("/ws/").headers() == {"upgrade": "$http_upgrade", "connection": "upgrade"}
    assert server.location("/ws/").inherited("proxy_read_timeout") == ["1h"]


def test_the_proxy_target_is_an_upstreams_servers_a_socket_or_an_address():
    config = Config.of(HAND_BUILT)
    server = config.tls_server()
    assert proxy_target(server.location("/ws/"), config) == ("http://crm", ["unix:/srv/crm/run/gunicorn.sock"])
    assert proxy_target(server.location("/"), config) == (None, [])
    deployed = DEPLOYED.tls_server()
    assert proxy_target(deployed.location("/ws/"), DEPLOYED) == ("http://django_asgi", ["unix:/home/nur/asgi.sock"])
    direct = Config.of(
        "# configuration file /e/n.conf:\nhttp { server { listen 443 ssl;"
        " location /a/ { proxy_pass http://unix:/run/app.sock:/; } location /b/ { proxy_pass http://10.0.0.2:8000; }"
        " } }"
    ).tls_server()
    assert proxy_target(direct.location("/a/"), DEPLOYED)[1] == ["unix:/run/app.sock"]
    assert proxy_target(direct.location("/b/"), DEPLOYED)[1] == ["10.0.0.2:8000"]


def test_the_maps_and_a_dump_that_is_not_nginx():
    assert DEPLOYED.maps()["$connection_upgrade"] == ("$http_upgrade", {"default": "upgrade", "": "close"})
    broken = Config.of("# configuration file /etc/nginx/nginx.conf:\nhttp { server { listen 443 ssl; }\n")
    assert broken.error and "nginx.conf" in broken.error and broken.servers() == []
