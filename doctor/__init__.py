"""nurcrm doctor: walks the production checklist against a live deployment and names the first broken layer."""
