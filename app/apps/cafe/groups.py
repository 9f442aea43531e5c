"""Names of the channel-layer groups that carry a company's table and order events.

The sender and the consumer both build names here, so they cannot drift apart.
"""

PREFIX = "cafe_tables_"


def company_group(company_id):
    return f"{PREFIX}{company_id}"


def branch_group(company_id, branch_id):
    return f"{PREFIX}{company_id}_{branch_id}"


def recipient_groups(company_id, branch_id=None):
    """Every group an event about an object of this company (and branch) goes to."""
    groups = [company_group(company_id)]
    if branch_id:
        groups.append(branch_group(company_id, branch_id))
    return groups


def socket_group(company_id, branch_id=None):
    """The one group a socket joins: its branch's when scoped to a branch, else the company's."""
    return branch_group(company_id, branch_id) if branch_id else company_group(company_id)
