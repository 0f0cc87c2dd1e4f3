"""The chat page and the API docs, served by ragline itself (they work offline and load
no script from another origin; swagger-ui-bundle ships Swagger UI's assets)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

SWAGGER_ASSETS = "/_assets/swagger"


def swagger_dir() -> str:
    import swagger_ui_bundle

    return str(swagger_ui_bundle.swagger_ui_path)


SMALL_MODEL_NOTICE = (
    '<p class="panel warn" id="notice">Answers come from SmolLM2-135M, a very small local model: fast '
    "enough for a CPU, too small to be reliable. Each answer is checked against its passages and "
    "replaced by an extractive one when a sentence is unsupported. For fluent answers, point ragline at "
    "vLLM (RAGLINE_GENERATOR=openai, RAGLINE_LLM_URL=...).</p>"
)


@router.get("/", response_class=HTMLResponse)
async def chat_page(request: Request) -> HTMLResponse:
    page = (resources.files("ragline") / "api" / "static" / "index.html").read_text()
    notice = SMALL_MODEL_NOTICE if request.app.state.settings.generator == "local" else ""
    return HTMLResponse(page.replace("<!--notice-->", notice))


@router.get("/docs", response_class=HTMLResponse)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="ragline API",
        swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon-32x32.png",
    )
