"""Step tls: the public name and its certificate, as a client sees them."""

from doctor.registry import check, fail, ok, unanswered

MIN_CERTIFICATE_DAYS = 14


@check("tls", "tls")
def tls_certificate(f):
    """The public name resolves and its certificate chain verifies (the checklist's wss:// URL)."""
    site, tls = f.site, f.tls
    if tls.get("error"):
        if "resolve" in tls["error"]:
            return fail(tls["error"], f"make {site.server_name} resolve to the web hosts (DNS A/AAAA)", manual=True)
        # A web host that does not answer explains a refused connection, and a rejected self-signed certificate
        # (the doctor trusts the one it reads on the web host).
        if silent := unanswered(f, f.names("web"), tls["error"]):
            return silent
        return fail(
            tls["error"],
            "install a certificate chain valid for the name (nginx_ssl_certificate), then systemctl reload nginx",
            manual=True,
        )
    pinned = " (doctor_connect_address)" if tls.get("pinned") else ""
    return ok(f"{site.server_name} -> {', '.join(tls['addresses'])}{pinned}; {tls.get('protocol')}, chain verified")


@check("tls", "tls", needs=["tls_certificate"])
def tls_certificate_lifetime(f):
    """The certificate is valid for at least 14 more days."""
    tls = f.tls
    if tls.get("days_left", 0) < MIN_CERTIFICATE_DAYS:
        return fail(
            f"the certificate expires {tls['not_after']} ({tls['days_left']} days left)",
            "renew it now (certbot renew), then systemctl reload nginx",
            manual=True,
        )
    return ok(f"valid {tls['days_left']} more days")
