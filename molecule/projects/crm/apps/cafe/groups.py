def table_group(company_id, branch_id=None):
    """The channel-layer group of a company's table screens, or of one branch's: used by sender and consumer."""
    name = f"cafe_tables_{company_id}"
    return f"{name}_{branch_id}" if branch_id else name
