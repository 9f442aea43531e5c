#!/usr/bin/env bash
# Deploy the whole stack into the local container (molecule's nurcrm-local, inventory/local)
# and print how to connect. Rerunning it converges again (changed=0 when nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

bash scripts/container-host.sh up
molecule converge

container=nurcrm-local
company=5eed0000-0000-4000-8000-000000000001
mkdir -p .cache
docker exec "$container" cat /etc/ssl/nurcrm/fullchain.pem > .cache/local-ca.pem
token=$(docker exec "$container" nurcrm-manage issue_token --user demo --ttl 86400)
url="wss://localhost/ws/cafe/tables/?token=$token"

cat <<TEXT

The nurcrm stack runs in container $container (nginx, gunicorn, Redis, PostgreSQL under systemd).

  WebSocket URL (token valid for 24 hours):
    $url
  Its self-signed certificate: .cache/local-ca.pem

Open a socket and keep it open (prints every frame):
  .venv/bin/python tools/wsclient.py --cafile .cache/local-ca.pem '$url' --send '{"action": "ping"}'

Send a real notification to it, from another terminal:
  docker exec $container nurcrm-manage send_test_notification --company $company

Look inside:  docker exec -it $container journalctl -u gunicorn -f
Tear down:    .venv/bin/molecule destroy   (PATH must hold .venv/bin)
TEXT
