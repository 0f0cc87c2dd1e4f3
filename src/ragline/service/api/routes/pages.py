"""The chat page and the API docs, served by ragline itself (they work offline and load
no script from another origin; fastapi-offline ships Swagger UI 5's assets, which render
OpenAPI 3.1 (its Redoc loads a logo from a CDN, so ragline does not serve it))."""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

SWAGGER_ASSETS = "/_assets/swagger"


def swagger_dir() -> str:
    """Swagger UI's and Redoc's files, from the fastapi-offline package (only its assets are used)."""
    spec = importlib.util.find_spec("fastapi_offline")
    assert spec is not None and spec.origin is not None, "fastapi-offline is a dependency of ragline"
    return str(Path(spec.origin).parent / "static")


SMALL_MODEL_NOTICE = (
    '<p class="panel warn" id="notice">Answers come from SmolLM2-135M, a very small local model: fast '
    "enough for a CPU, too small to be reliable. Each answer is checked against its passages and "
    "replaced by an extractive one when a sentence is unsupported. For fluent answers, point ragline at "
    "vLLM (RAGLINE_GENERATOR=openai, RAGLINE_LLM_URL=...).</p>"
)


@router.get("/", response_class=HTMLResponse)
async def chat_page(request: Request) -> HTMLResponse:
    page = (resources.files("ragline.service.api") / "static" / "index.html").read_text()
    notice = SMALL_MODEL_NOTICE if request.app.state.settings.generator == "local" else ""
    return HTMLResponse(page.replace("<!--notice-->", notice))


@router.get("/docs", response_class=HTMLResponse)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="ragline API",
        swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon.png",
    )
