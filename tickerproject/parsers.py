"""The API's JSON parser (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]).

Its own module: DRF imports parser classes while `rest_framework.views` is still loading, so the
module must not import DRF views (tickerproject.api_common does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from tickerproject.platform.json_limits import JSONTooDeep, check_depth


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser with a nesting limit (`JSON_MAX_DEPTH`): a body nested deeper is a 400
    (`{"detail": "JSON nested deeper than N levels"}`) instead of a RecursionError and a 500. No API
    body needs more than a few levels."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        max_depth = settings.JSON_MAX_DEPTH
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(str(JSONTooDeep(max_depth))) from None
        try:
            return check_depth(data, max_depth)
        except JSONTooDeep as exc:
            raise ParseError(str(exc)) from None
