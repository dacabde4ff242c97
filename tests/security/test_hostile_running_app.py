"""Hostile input against the app as deployed: uvicorn started with the Dockerfile's CMD, over real HTTP.

A guesser rotating `X-Forwarded-For` must not become a new client on every attempt (the sign-in
lockout and the API throttles key on the address uvicorn and the app agree on), and only a proxy
named in FORWARDED_ALLOW_IPS may say who the client is. A Kite login callback that a page on another
site makes a signed-in operator's browser fetch changes nothing.
"""

from __future__ import annotations

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _admin_login(app, session: requests.Session, username: str, password: str, forwarded_for: str):
    if "csrftoken" not in session.cookies:
        session.get(f"{app.base_url}/admin/login/", timeout=10)
    return session.post(
        f"{app.base_url}/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"X-Forwarded-For": forwarded_for},
        allow_redirects=False,
        timeout=10,
    )


def _token_login(app, username: str, password: str, forwarded_for: str):
    return requests.post(
        f"{app.base_url}/api/auth/token/",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=10,
    )


def test_rotating_x_forwarded_for_does_not_escape_the_admin_lockout(running_app):
    app = running_app
    session = requests.Session()
    codes = [
        _admin_login(app, session, app.staff_username, f"guess-{n}", f"198.51.100.{n}").status_code for n in range(8)
    ]
    assert codes[:5] == [200] * 5  # the form again, with an error
    assert codes[5:] == [429] * 3
    right = _admin_login(app, session, app.staff_username, app.staff_password, "198.51.100.200")
    assert right.status_code == 429
    assert right.headers["Retry-After"] == "900"
    assert "sessionid" not in session.cookies


def test_rotating_x_forwarded_for_does_not_escape_the_token_login_lockout(running_app):
    app = running_app
    codes = [_token_login(app, app.staff_username, f"guess-{n}", f"198.51.100.{n}").status_code for n in range(7)]
    assert codes[:5] == [400] * 5
    assert codes[5:] == [429] * 2
    right = _token_login(app, app.staff_username, app.staff_password, "198.51.100.201")
    assert right.status_code == 429
    assert right.headers["Retry-After"] == "900"
    assert "token" not in right.text


def test_a_trusted_proxy_on_loopback_names_the_client(start_running_app):
    app = start_running_app(FORWARDED_ALLOW_IPS="127.0.0.1")
    guesser = requests.Session()
    codes = [_admin_login(app, guesser, app.staff_username, f"guess-{n}", "198.51.100.7").status_code for n in range(6)]
    assert codes == [200] * 5 + [429]
    # Another client behind the same proxy is not locked out by the first one's failures.
    operator = requests.Session()
    signed_in = _admin_login(app, operator, app.staff_username, app.staff_password, "198.51.100.8")
    assert signed_in.status_code == 302 and "sessionid" in operator.cookies
    token = _token_login(app, app.staff_username, app.staff_password, "198.51.100.9")
    assert token.status_code == 200 and token.json()["token"]
    # The client cannot unlock itself by prepending another address: the proxy appends what it saw.
    again = _admin_login(app, guesser, app.staff_username, app.staff_password, "203.0.113.1, 198.51.100.7")
    assert again.status_code == 429
    # Without X-Forwarded-For the proxy itself is the client, and it has no failures.
    staff = app.staff_session()
    assert staff.get(f"{app.base_url}/api/accounts/", timeout=10).status_code == 200


_ACCOUNT_STATE = """
from subscriptions.models import TradingAccount
a = TradingAccount.objects.get(label="Victim")
print(repr((a.health, a.last_error, a.access_token, a.kite_user_id, a.token_expires_at, a.updated_at)))
"""


def test_a_cross_site_kite_callback_changes_nothing(start_running_app):
    # An exchange that cannot be reached: before the login state existed, such a callback marked the
    # account unhealthy (its subscriptions moved off it); with Kite reachable it swapped the token.
    app = start_running_app(KITE_API_ROOT="http://127.0.0.1:9", KITE_LOGIN_URL="http://127.0.0.1:9/connect/login")
    app.django_python(
        "import datetime as dt\n"
        "from subscriptions.models import TradingAccount\n"
        "TradingAccount.objects.create(label='Victim', api_key='victim_key', api_secret='victim_secret',"
        " access_token='the-real-token', kite_user_id='AB1234', health=TradingAccount.Health.OK,"
        " token_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=6))\n"
    )
    account_id = int(
        app.django_python(_ACCOUNT_STATE.replace("print(repr((", "print(a.pk) or print(repr((")).split()[0]
    )
    before = app.django_python(_ACCOUNT_STATE)
    browser = app.staff_session()  # the operator is signed in; the attacker's page makes the browser call
    response = browser.get(
        f"{app.base_url}/kite/callback/",
        params={"account": account_id, "status": "success", "request_token": "attackers-request-token"},
        headers={"Referer": "https://attacker.example/", "Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302
    page = browser.get(f"{app.base_url}{response.headers['Location']}", timeout=10)
    assert "Kite login refused" in page.text and "Nothing was changed" in page.text
    assert app.django_python(_ACCOUNT_STATE) == before
    assert "attackers-request-token" not in app.log()
