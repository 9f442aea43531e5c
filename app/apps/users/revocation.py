"""A user's refresh tokens are revoked when the user's password or active flag changes through save().

That is every change made through the ORM one object at a time: the admin, forms, `set_password()`
then `save()`, `manage.py changepassword`. A QuerySet.update() or raw SQL bypasses save(); they are
covered otherwise: the refresh endpoint refuses a token of an inactive user, or one whose password
digest (the `hash_password` claim) is not the user's current one (apps.users.serializers), and
nurcrm_realtime.guard closes the user's sockets. What only this module adds: a user deactivated and
then activated again keeps none of the refresh tokens issued before.
"""

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from apps.users.models import User

WATCHED = {"password", "is_active"}


def revoke_refresh_tokens(user):
    """Blacklist every refresh token of `user` that is not expired or blacklisted yet; how many."""
    outstanding = OutstandingToken.objects.filter(
        user_id=user.pk, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    revoked = [BlacklistedToken(token=token) for token in outstanding]
    BlacklistedToken.objects.bulk_create(revoked, ignore_conflicts=True)
    return len(revoked)


@receiver(pre_save, sender=User)
def _note_access_change(sender, instance, raw=False, update_fields=None, **kwargs):
    if raw or instance._state.adding or (update_fields is not None and not WATCHED & set(update_fields)):
        return
    before = User.objects.filter(pk=instance.pk).values_list("password", "is_active").first()
    if before is not None and before != (instance.password, instance.is_active):
        instance._revoke_refresh_tokens = True


@receiver(post_save, sender=User)
def _revoke_after_access_change(sender, instance, **kwargs):
    if instance.__dict__.pop("_revoke_refresh_tokens", False):
        revoke_refresh_tokens(instance)
