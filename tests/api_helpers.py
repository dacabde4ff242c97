"""Fixtures shared by the API tests (import them into a test module: `from tests.api_helpers import *`)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

__all__ = ["_clear_throttles", "anon_client", "staff_client", "staff_user", "token_client", "user", "user_client"]


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()  # throttle counters live in the cache
    yield
    cache.clear()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("viewer")  # no password: no slow hashing


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("operator", is_staff=True)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    client = APIClient()
    client.force_login(staff_user)
    return client


@pytest.fixture
def token_client(staff_user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff_user).key}")
    return client
