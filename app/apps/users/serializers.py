"""The refresh endpoint's serializer: simplejwt's, with the user checked before anything is minted.

simplejwt's own looks the token's user up with objects.get(), so a deleted user's refresh token
raised DoesNotExist (HTTP 500), and it never compares the token's password digest with the
user's. Here a deleted, inactive or since re-passworded user is a 401, and a refresh token is
good for one refresh: it is blacklisted as it is used, and a second use is a 401 too.
"""

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import serializers
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    default_error_messages = {
        "no_active_account": _("No active account found for the given token."),
        "password_changed": _("The user's password has been changed."),
        "token_used": _("Token has been used already."),
    }

    def validate(self, attrs):
        refresh = self.token_class(attrs["refresh"])  # TokenError (a 401) when expired, forged or blacklisted
        user_id = refresh.payload.get(api_settings.USER_ID_CLAIM)
        user = get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
        if not api_settings.USER_AUTHENTICATION_RULE(user):
            self.refuse("no_active_account")
        if refresh.payload.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
            self.refuse("password_changed")

        data = {"access": str(refresh.access_token)}
        # The old token is blacklisted before a new one is made; of two refreshes racing with one
        # token, only the one that blacklisted it gets a new pair.
        _blacklisted, created = refresh.blacklist()
        if not created:
            self.refuse("token_used")
        refresh.set_jti()
        refresh.set_exp()
        refresh.set_iat()
        refresh.outstand()
        data["refresh"] = str(refresh)
        return data

    def refuse(self, code):
        raise AuthenticationFailed(self.error_messages[code], code)
