"""The production checklist as checks over facts, one module per layer, each check registered once on import
(doctor/registry.py): tls, nginx, gunicorn, redis, django (and the database), handshake, and site (the
consumer, its group, delivery and the logs, through the public URL). `nurcrm-doctor --list` prints them.

A check reads only facts: one host's view (`h`, for checks on a group's hosts) or the whole walk's
(`f`, for the client's side and for comparisons across hosts), gathered read-only by
doctor/probe.py on the hosts and doctor/site.py from the client. It returns ok(evidence) or
fail(evidence, explanation); the registry adds the rerun of the layer that restores it. Its docstring's
first line says what it proves.

The registry judges a host that did not answer; a check that reads other hosts judges those that
answered, and blames those that did not where they explain what it sees (`unanswered`).
"""

# In the order of their prerequisites (a check's `needs` are registered before it); the registry orders
# the walk by step.
from doctor.checks import tls, nginx, gunicorn, redis, django, handshake, site  # noqa: F401, I001
