"""Print a JWT access token for a user: `TOKEN=$(manage.py issue_token --user demo)`."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework_simplejwt.tokens import AccessToken


class Command(BaseCommand):
    help = "Print an access token for --user (lifetime from settings, or --ttl seconds)."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username")
        parser.add_argument(
            "--ttl",
            type=int,
            help="lifetime in seconds; zero or less mints an already expired token, for testing refusals",
        )

    def handle(self, *args, user, ttl=None, **options):
        account = get_user_model().objects.filter(username=user).first()
        if account is None:
            raise CommandError(f"no user named {user!r}")
        if not account.is_active:
            raise CommandError(f"user {user!r} is inactive")
        token = AccessToken.for_user(account)
        if ttl is not None:
            token.set_exp(lifetime=timedelta(seconds=ttl))
        self.stdout.write(str(token))
