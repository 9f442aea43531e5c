"""Every service of every host listens only on that host's own address. The containers share this machine's
network, as hosts of one private network share its wire: a service on 127.0.0.1 or on a wildcard would
collide with another host's, or answer for it."""


def listeners(node):
    """This host's own listening TCP sockets: (address, program). ss shows the other containers' sockets too,
    but names the program only for this container's own processes."""
    found = []
    for line in node.check_output("ss -Hltnp").splitlines():
        if "users:((" in line:
            address = line.split()[3].rsplit(":", 1)[0].strip("[]")
            found.append((address, line.split('users:(("', 1)[1].split('"', 1)[0]))
    return found


def test_every_service_listens_only_on_its_hosts_address(nodes):
    for node in nodes.values():
        found = listeners(node)
        assert found, f"{node.name} listens on nothing"
        wrong = [(address, program) for address, program in found if address != node.address]
        assert not wrong, f"{node.name} ({node.address}) listens elsewhere: {wrong}"
