"""Forms for the admin: trading accounts with write-only secrets, and the chain subscription."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError

from subscriptions import selectors
from subscriptions.models import Subscription, TradingAccount
from subscriptions.services.accounts import account_set_secrets
from subscriptions.services.chains import MAX_STRIKES_EACH_SIDE, ChainPlan, chain_plan


class TradingAccountAdminForm(forms.ModelForm):
    """Secrets are write-only: the inputs never render a value, and blank keeps the stored one."""

    new_api_secret = forms.CharField(
        label="Set new api_secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored secret. Mock accounts need none.",
    )
    new_access_token = forms.CharField(
        label="Set new access token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Normally set by “Log in with Kite”; paste one only to bypass the login flow.",
    )

    class Meta:
        model = TradingAccount
        fields = [
            "label",
            "kite_user_id",
            "api_key",
            "is_mock",
            "is_active",
            "max_connections",
            "instruments_per_connection",
        ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        is_mock = cleaned.get("is_mock", False)
        has_secret = bool(self.instance.pk and self.instance.api_secret) or bool(cleaned.get("new_api_secret"))
        if not is_mock and not has_secret:
            self.add_error("new_api_secret", "A Kite account needs its api_secret (mock accounts need none).")
        return cleaned

    def save(self, commit: bool = True) -> TradingAccount:
        account = account_set_secrets(
            account=super().save(commit=False),
            api_secret=self.cleaned_data.get("new_api_secret"),
            access_token=self.cleaned_data.get("new_access_token"),
            save=False,
        )
        if commit:
            account.save()
        return account


def _expiry_choices() -> list[tuple[str, str]]:
    dates: dict[dt.date, list[str]] = {}
    for underlying in selectors.option_underlyings():
        for expiry in selectors.option_expiries(underlying=underlying):
            dates.setdefault(expiry, []).append(underlying)
    return [(d.isoformat(), f"{d:%a %d %b %Y} ({', '.join(names)})") for d, names in sorted(dates.items())]


class ChainSubscribeForm(forms.Form):
    """Subscribe N strikes either side of the ATM strike of one option chain."""

    underlying = forms.ChoiceField()
    expiry = forms.DateField(
        widget=forms.Select(),
        help_text="Expiries of listed options from today on; the underlying must list this expiry.",
    )
    strikes_each_side = forms.IntegerField(
        min_value=0, max_value=MAX_STRIKES_EACH_SIDE, initial=10, help_text="Strikes below and above the ATM strike."
    )
    mode = forms.ChoiceField(choices=Subscription.Mode.choices)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["underlying"]).choices = [(u, u) for u in selectors.option_underlyings()]
        self.fields["expiry"].widget.choices = _expiry_choices()
        self.fields["mode"].initial = "full"
        self.plan: ChainPlan | None = None

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if self.errors:
            return cleaned
        try:
            self.plan = chain_plan(
                underlying=cleaned["underlying"],
                expiry=cleaned["expiry"],
                strikes_each_side=cleaned["strikes_each_side"],
                mode=cleaned["mode"],
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for name, errors in exc.error_dict.items():
                    self.add_error(name if name in self.fields else None, errors)
            else:
                self.add_error(None, exc)
        return cleaned
