"""`env_secrets`: the secrets a running app's environment file holds, by the vault's names (playbooks/new-vault.yml).

A takeover keeps the users signed in and the app's data reachable only if the bundle's deploy uses the secrets
the app runs with today: Django's SECRET_KEY and the JWT key (every session and token is signed with them), and
the database's and Redis's passwords. The file is read as the app reads it (the doctor's parser).
"""

from urllib.parse import unquote, urlsplit

from doctor.probe import parse_env_file

# Each vault variable, and the names a project's environment may give it, in order; a URL's password counts.
NAMES = {
    "vault_django_secret_key": ["SECRET_KEY", "DJANGO_SECRET_KEY"],
    "vault_jwt_signing_key": ["JWT_SIGNING_KEY", "JWT_SECRET_KEY", "JWT_SECRET", "SIMPLE_JWT_SIGNING_KEY"],
    "vault_postgresql_password": ["DB_PASSWORD", "POSTGRES_PASSWORD", "DATABASE_PASSWORD", "DATABASE_URL"],
    "vault_redis_password": ["REDIS_PASSWORD", "REDIS_URL"],
}


def env_secrets(text, names=None):
    """{vault variable: value} for each vault variable one of its names holds in the file `text`."""
    env = parse_env_file(text)
    found = {}
    for variable, candidates in (names or NAMES).items():
        for name in candidates:
            value = env.get(name, "")
            if name.endswith("_URL"):
                value = unquote(urlsplit(value).password or "") if value else ""
            if value:
                found[variable] = value
                break
    return found


class FilterModule:
    def filters(self):
        return {"env_secrets": env_secrets}
