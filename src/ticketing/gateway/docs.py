"""``/docs``: the API (Swagger UI) and the events (AsyncAPI), with assets served locally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from ticketing.gateway.openapi import MergedSpec
from ticketing.shared.errors import Unavailable
from ticketing.shared.messaging.asyncapi import asyncapi_document
from ticketing.shared.settings import Settings

SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ticketing API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="/docs/assets/swagger-ui/swagger-ui.css">
</head>
<body>
  <p style="font-family: sans-serif; margin: 1em 2em">
    Events (Kafka): <a href="/docs/events">/docs/events</a>
  </p>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/docs/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    });
  </script>
</body>
</html>
"""

ASYNCAPI_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ticketing events</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="/docs/assets/asyncapi/styles/default.min.css">
</head>
<body>
  <div id="asyncapi"></div>
  <script src="/docs/assets/asyncapi/browser/standalone/index.js"></script>
  <script>
    AsyncApiStandalone.render(
      { schema: { url: "/docs/asyncapi.json" }, config: { show: { sidebar: true } } },
      document.getElementById("asyncapi"),
    );
  </script>
</body>
</html>
"""


def assets_root(settings: Settings) -> Path:
    """``TICKETING_DOCS_ASSETS_DIR``: the installed ``web/node_modules``."""
    return Path(settings.docs_assets_dir)


def _page(html: str, request: Request[Any, Any, Any]) -> Response[str]:
    if not request.app.state.docs_assets_present:
        raise Unavailable("the documentation assets are not installed: run `npm ci --prefix web`")
    return Response(html, media_type="text/html; charset=utf-8")


@get("/docs", include_in_schema=False)
async def swagger_page(request: Request[Any, Any, Any]) -> Response[str]:
    return _page(SWAGGER_PAGE, request)


@get("/docs/events", include_in_schema=False)
async def asyncapi_page(request: Request[Any, Any, Any]) -> Response[str]:
    return _page(ASYNCAPI_PAGE, request)


@get("/docs/openapi.json", include_in_schema=False)
async def merged_openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
    spec: MergedSpec = request.app.state.spec
    return await spec.document()


@get("/docs/asyncapi.json", include_in_schema=False, sync_to_thread=False)
def asyncapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    return asyncapi_document(settings.kafka_bootstrap)


def docs_handlers(settings: Settings) -> list[ControllerRouterHandler]:
    root = assets_root(settings)
    return [
        swagger_page,
        asyncapi_page,
        merged_openapi,
        asyncapi_json,
        create_static_files_router(
            path="/docs/assets/swagger-ui",
            directories=[root / "swagger-ui-dist"],
            include_in_schema=False,
        ),
        create_static_files_router(
            path="/docs/assets/asyncapi",
            directories=[root / "@asyncapi" / "react-component"],
            include_in_schema=False,
        ),
    ]
