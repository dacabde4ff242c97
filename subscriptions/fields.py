"""A text field encrypted at rest with Fernet (AES-128-CBC + HMAC), keys from settings."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        # Derived from SECRET_KEY so a fresh checkout works; production sets FIELD_ENCRYPTION_KEYS.
        derived = base64.urlsafe_b64encode(hashlib.sha256(("fernet:" + secret_key).encode()).digest())
        keys = (derived.decode(),)
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def fernet() -> MultiFernet:
    """The MultiFernet for the configured keys (the first key encrypts, all decrypt)."""
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS), settings.SECRET_KEY)


class EncryptedTextField(models.TextField):
    """Stores `fernet:<token>`; Python code only ever sees the clear text.

    Never shown in the admin or the API: forms and serializers must use write-only inputs.
    """

    PREFIX = "fernet:"

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return self.PREFIX + fernet().encrypt(str(value).encode()).decode()

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value in (None, "") or not value.startswith(self.PREFIX):
            return value
        try:
            return fernet().decrypt(value[len(self.PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "An encrypted field could not be decrypted: FIELD_ENCRYPTION_KEYS or SECRET_KEY changed."
            ) from exc
