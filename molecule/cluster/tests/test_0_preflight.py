"""Preflight refuses, before anything changes, an inventory whose app hosts would not share one channel
layer: channels_redis shards by position in its hosts list, so each host would put a group's members where
the others never look. The message names each host's Redis (without credentials), Sentinels and prefix."""

import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

# app2's own setting -> what the message must show for it
APART = {
    "app_channel_layer_prefix: asgi2": "prefix asgi2",
    "app_redis_sentinels: ['127.0.2.33:26379', '127.0.2.32:26379', '127.0.2.31:26379']": (
        "sentinels 127.0.2.33:26379,127.0.2.32:26379,127.0.2.31:26379"
    ),
}


@pytest.mark.parametrize("setting", APART)
def test_app_hosts_on_different_channel_layers_are_refused(inventory, apps, tmp_path, setting):
    """The scenario's inventory, with one app host set apart in host_vars."""
    for entry in Path(inventory).iterdir():
        (tmp_path / entry.name).symlink_to(entry.resolve())
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / f"{apps[-1].name}.yml").write_text(f"---\n{setting}\n")
    done = subprocess.run(
        ["ansible-playbook", "playbooks/preflight.yml", "-i", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": str(ROOT / ".venv/bin") + ":/usr/bin:/bin", "HOME": str(Path.home()), "ANSIBLE_NOCOLOR": "1"},
    )
    output = " ".join(done.stdout.split())
    assert done.returncode != 0 and "must share one Redis" in output, output[-2000:]
    assert f"{apps[-1].name}: url redis://nurcrm/0" in output and APART[setting] in output, output[-2000:]
    assert "changed=0" in output and "changed=1" not in output
