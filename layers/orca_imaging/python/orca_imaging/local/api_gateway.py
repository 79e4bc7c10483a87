"""A local API Gateway: HTTP in, REST proxy events through the real handlers, HTTP out.

Like API Gateway with a Cognito authorizer, it answers 401 before any handler runs when
the bearer token is missing or invalid, and passes the token's claims to the handler at
`requestContext.authorizer.claims`.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join
from werkzeug.wrappers import Request, Response

from orca_imaging.resources import ROUTES, RouteSpec, function

if TYPE_CHECKING:
    from orca_imaging.local.jwt_issuer import LocalIssuer
    from orca_imaging.local.lambda_runtime import FunctionHost

_TEXT_TYPES = ("application/json", "text/", "application/xml")


@dataclass(frozen=True)
class _CompiledRoute:
    spec: RouteSpec
    pattern: re.Pattern[str]


def _compile(route: RouteSpec) -> _CompiledRoute:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(route.path))
    return _CompiledRoute(route, re.compile(f"^{regex}$"))


class LocalApiGateway:
    def __init__(
        self, host: FunctionHost, issuer: LocalIssuer, web_root: Path | None, stage: str = "local"
    ) -> None:
        self._host = host
        self._issuer = issuer
        self._web_root = web_root
        self._stage = stage
        # Like API Gateway, a literal path segment wins over a {parameter} in the same place.
        self._routes = [_compile(r) for r in sorted(ROUTES, key=lambda r: r.path.count("{"))]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.path == "/health":
            return Response(json.dumps({"status": "ok"}), content_type="application/json")
        if request.path == "/" or request.path.startswith("/web"):
            return self._static(request)
        for route in self._routes:
            match = route.pattern.match(request.path)
            if match and route.spec.method == request.method:
                return self._invoke(route.spec, match.groupdict(), request)
        if any(r.pattern.match(request.path) for r in self._routes):
            return _json(405, {"message": "Method Not Allowed"})
        return _json(404, {"message": "Not Found"})

    def _static(self, request: Request) -> Response:
        if self._web_root is None:
            raise NotFound()
        relative = request.path.removeprefix("/web").lstrip("/") or "index.html"
        path = safe_join(str(self._web_root), relative)
        if path is None or not Path(path).is_file():
            return _json(404, {"message": "Not Found"})
        data = Path(path).read_bytes()
        kind = {"html": "text/html", "js": "text/javascript", "css": "text/css"}.get(
            Path(path).suffix.lstrip("."), "application/octet-stream"
        )
        return Response(data, content_type=kind)

    def _claims(self, request: Request) -> dict[str, Any] | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return self._issuer.verify(token)
        except jwt.InvalidTokenError:
            return None

    def _invoke(self, route: RouteSpec, params: dict[str, str], request: Request) -> Response:
        claims = self._claims(request)
        if claims is None:
            return _json(401, {"message": "Unauthorized"})
        body = request.get_data()
        text = not body or request.mimetype.startswith(_TEXT_TYPES)
        event = {
            "resource": route.path,
            "path": request.path,
            "httpMethod": request.method,
            "headers": dict(request.headers),
            "multiValueHeaders": {k: request.headers.getlist(k) for k in request.headers.keys()},  # noqa: SIM118
            "queryStringParameters": dict(request.args) or None,
            "multiValueQueryStringParameters": {k: request.args.getlist(k) for k in request.args} or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "body": body.decode() if text else base64.b64encode(body).decode(),
            "isBase64Encoded": not text,
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "stage": self._stage,
                "resourcePath": route.path,
                "httpMethod": request.method,
                "path": f"/{self._stage}{request.path}",
                "identity": {"sourceIp": request.remote_addr},
                "authorizer": {"claims": self._issuer.as_authorizer_claims(claims)},
            },
        }
        result = self._host.invoke(function(route.function), event)
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        response = Response(data, status=result.get("statusCode", 200))
        # Like API Gateway: no Content-Type unless the handler set one.
        del response.headers["Content-Type"]
        for name, value in (result.get("headers") or {}).items():
            response.headers[name] = value
        for name, values in (result.get("multiValueHeaders") or {}).items():
            response.headers.remove(name)
            for value in values:
                response.headers.add(name, value)
        return response


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
