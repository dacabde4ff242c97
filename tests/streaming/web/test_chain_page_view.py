"""The /chain/ page frame (the data itself arrives over the websocket) and its sign-in page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.utils import timezone

from tests.subscriptions.factories import make_chain

pytestmark = pytest.mark.django_db

NEAR = (timezone.now() + dt.timedelta(days=10)).date()
FAR = NEAR + dt.timedelta(days=35)


@pytest.fixture
def chains():
    make_chain(underlying="NIFTY", expiry=NEAR, strikes=[26000.0])
    make_chain(underlying="NIFTY", expiry=FAR, strikes=[26000.0])
    make_chain(underlying="BANKNIFTY", expiry=FAR, strikes=[59000.0])


@pytest.fixture
def signed_in(client):
    client.force_login(get_user_model().objects.create_user("viewer"))
    return client


def test_chain_page_needs_a_signed_in_user(client):
    response = client.get("/chain/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/chain/")


def test_sign_in_page_logs_in_and_lands_on_the_chain(client, chains):
    get_user_model().objects.create_user("viewer", password="long-enough-pass-88")
    assert client.get("/login/").status_code == 200
    bad = client.post("/login/", {"username": "viewer", "password": "wrong"})
    assert bad.status_code == 200
    assert "correct username and password" in bad.content.decode()
    good = client.post("/login/", {"username": "viewer", "password": "long-enough-pass-88"})
    assert good.status_code == 302
    assert good["Location"] == "/chain/"


def test_default_chain_is_nifty_nearest_expiry(signed_in, chains):
    html = signed_in.get("/chain/").content.decode()
    assert f'data-underlying="NIFTY" data-expiry="{NEAR.isoformat()}"' in html
    assert '<option value="BANKNIFTY"' in html
    assert f'<option value="{FAR.isoformat()}"' in html


def test_chosen_chain_and_fallback_for_unknown_choices(signed_in, chains):
    html = signed_in.get("/chain/", {"underlying": "banknifty", "expiry": FAR.isoformat()}).content.decode()
    assert f'data-underlying="BANKNIFTY" data-expiry="{FAR.isoformat()}"' in html
    html = signed_in.get("/chain/", {"underlying": "NOPE", "expiry": "2001-01-01"}).content.decode()
    assert f'data-underlying="NIFTY" data-expiry="{NEAR.isoformat()}"' in html


def test_page_with_no_chains_says_what_to_do(signed_in):
    html = signed_in.get("/chain/").content.decode()
    assert "No option chains are listed yet" in html


def test_page_loads_only_local_static_files_that_exist(signed_in, chains):
    html = signed_in.get("/chain/").content.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"chain.js", "chain.css", "uPlot.iife.min.js", "uPlot.min.css"}
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset
    assert "http://" not in html and "https://" not in html
