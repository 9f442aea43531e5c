"""Redis under Sentinel (nurcrm_realtime.redisconn), for real: a master, a replica and a Sentinel started here,
a real gunicorn finding the master through the Sentinel, and a failover under a connected client."""

import asyncio
import json
import shutil
import subprocess
import time

import pytest
import redis
from websockets.exceptions import ConnectionClosed

from apps.cafe.management.commands.seed_demo import DEMO_COMPANY_ID
from nurcrm_ops.workerinfo import sentinel_of
from nurcrm_realtime import redisconn
from tests.conftest import LAYERS, free_port
from tests.localstack import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.redis]

MASTER_NAME = "nurcrm"
SENTINEL_PASSWORD = "sentinel-test-password"


class Replicated:
    """A master, its replica and one Sentinel (quorum 1, a second to notice a master down)."""

    def __init__(self, workdir):
        binary = shutil.which("redis-server")
        self.ports = {"master": free_port(), "replica": free_port(), "sentinel": free_port()}
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)]
        self.processes = [
            subprocess.Popen([binary, "--port", str(self.ports["master"]), *common], stdout=subprocess.DEVNULL),
            subprocess.Popen(
                [binary, "--port", str(self.ports["replica"]), *common]
                + ["--replicaof", "127.0.0.1", str(self.ports["master"])],
                stdout=subprocess.DEVNULL,
            ),
        ]
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.ports['sentinel']}\nbind 127.0.0.1\ndir {workdir}\nrequirepass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports['master']} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\nsentinel failover-timeout {MASTER_NAME} 5000\n"
        )
        self.processes.append(subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL))
        self.sentinel = redis.Redis(port=self.ports["sentinel"], password=SENTINEL_PASSWORD, decode_responses=True)
        self.wait(lambda: self.replicas() == 1, "the Sentinel to see the replica")
        # what redis-py's discover_master accepts: a master neither subjectively nor objectively down
        self.wait(lambda: self.master_flags() == "master", "the Sentinel to hold the master healthy")

    def master_port(self):
        return int(self.sentinel.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)[1])

    def master_flags(self):
        try:
            return self.sentinel.sentinel_master(MASTER_NAME)["flags"]
        except redis.RedisError:
            return ""

    def replicas(self):
        try:
            return len(self.sentinel.execute_command("SENTINEL", "replicas", MASTER_NAME))
        except redis.RedisError:
            return 0

    def wait(self, condition, what, timeout=20):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            time.sleep(0.1)

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)


@pytest.fixture
def replicated(tmp_path):
    cluster = Replicated(tmp_path)
    yield cluster
    cluster.stop()


def test_a_host_of_the_sentinels_names_no_secret_and_finds_the_master(replicated):
    config = redisconn.host(
        "redis://:pw@ignored/3", [("127.0.0.1", replicated.ports["sentinel"])], MASTER_NAME, SENTINEL_PASSWORD
    )
    assert sentinel_of(config) == {  # what a worker's report says of it (nurcrm_ops.workerinfo)
        "sentinels": [f"127.0.0.1:{replicated.ports['sentinel']}"],
        "master_name": MASTER_NAME,
    }
    config["password"] = None  # the test's Redis has no password
    client = redisconn.client(config)
    assert client.connection_pool.get_master_address() == ("127.0.0.1", replicated.ports["master"])
    assert client.ping()


def test_bad_sentinel_addresses_are_refused_naming_them():
    assert redisconn.sentinel_addresses("10.0.0.1:26379, [::1]:26380") == [("10.0.0.1", 26379), ("::1", 26380)]
    with pytest.raises(ValueError, match="'10.0.0.1' is not host:port"):
        redisconn.sentinel_addresses("10.0.0.1")


@pytest.mark.parametrize("layer", LAYERS)
async def test_a_client_keeps_receiving_or_reconnects_after_a_failover(tmp_path, replicated, layer):
    """gunicorn on the master the Sentinel names; the master stops and the Sentinel fails over to the replica:
    events sent after it reach the socket, which stayed open or was closed and reconnected, never deaf."""
    stack = LocalStack(
        tmp_path,
        "redis://ignored/0",
        workers=2,
        layer=layer,
        REDIS_SENTINELS=f"127.0.0.1:{replicated.ports['sentinel']}",
        REDIS_MASTER_NAME=MASTER_NAME,
        REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
    )
    notify = ("send_test_notification", "--company", str(DEMO_COMPANY_ID))
    try:
        token = stack.manage("issue_token", "--user", "demo").strip()
        ws = await stack.connect(f"token={token}")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_established"
        await asyncio.to_thread(stack.manage, *notify)
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "table_status_changed"
        old = replicated.master_port()
        replicated.processes[0].terminate()  # the master stops; the Sentinel promotes the replica
        replicated.wait(lambda: replicated.master_port() != old, "the failover")
        await asyncio.sleep(2)  # the workers' layer watches notice within a second
        await asyncio.to_thread(stack.manage, *notify)
        try:
            while (message := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "table_status_changed":
                assert message["type"] == "tables_snapshot", message
            outcome = "kept receiving"
        except ConnectionClosed:  # closed (1012) by the failover: a new socket gets the events (never deaf)
            ws = await stack.connect(f"token={token}")
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_established"
            await asyncio.to_thread(stack.manage, *notify)
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "table_status_changed"
            outcome = "reconnected"
        print(layer, outcome)
        await ws.close()
    finally:
        stack.stop()


LOSE_A_CHANGE = "from apps.cafe.models import Table; Table.objects.filter(number=1).update(status='cleaning')"


@pytest.mark.parametrize("layer", LAYERS)
async def test_a_change_lost_in_a_failover_reaches_the_open_socket(tmp_path, replicated, layer):
    """The master stops and a table changes with no event at all (as one lost while the workers' links to Redis
    were down): once the Sentinel has promoted the replica, the socket shows the change within 10 s, by the
    snapshot its worker sends when its link is made again (or, closed with 1012, by its reconnect's hello)."""
    stack = LocalStack(
        tmp_path,
        "redis://ignored/0",
        workers=2,
        layer=layer,
        REDIS_SENTINELS=f"127.0.0.1:{replicated.ports['sentinel']}",
        REDIS_MASTER_NAME=MASTER_NAME,
        REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
    )

    def shows_the_change(tables):
        return {t["status"] for t in tables if t["number"] == 1} == {"cleaning"}

    try:
        token = stack.manage("issue_token", "--user", "demo").strip()
        ws = await stack.connect(f"token={token}")
        assert not shows_the_change(json.loads(await asyncio.wait_for(ws.recv(), 5))["tables"])
        old = replicated.master_port()
        replicated.processes[0].terminate()
        await asyncio.to_thread(stack.manage, "shell", "-c", LOSE_A_CHANGE)
        replicated.wait(lambda: replicated.master_port() != old, "the failover")
        promoted = time.monotonic()
        try:
            while not shows_the_change((message := json.loads(await asyncio.wait_for(ws.recv(), 10)))["tables"]):
                assert message["type"] == "tables_snapshot", message
        except ConnectionClosed:
            ws = await stack.connect(f"token={token}")
            assert shows_the_change(json.loads(await asyncio.wait_for(ws.recv(), 5))["tables"])
        assert time.monotonic() - promoted < 10
        await ws.close()
    finally:
        stack.stop()
