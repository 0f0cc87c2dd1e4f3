"""The chat page in headless Chromium: type a question, see a streamed answer and its source."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from ragline.service.api.auth import KeyStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).parents[2] / "test-results"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("RAGLINE_REQUIRE_TOOLS") != "1",
    reason="needs Debian's chromium (scripts/setup.sh --test installs it)",
)

BEES = (
    "Honeybees perform the waggle dance to tell nest mates how far away the flowers are. "
    "The dance is performed inside the dark hive, on the vertical wax comb."
)
KESTREL = "The Kestrel database listens on port 7411 by default and keeps its data in hot storage."
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_a_two_turn_conversation_streams_answers_with_cited_passages_and_grounding_marks(serve_app, tmp_path):
    from playwright.sync_api import sync_playwright

    server = serve_app()
    key, _ = KeyStore(tmp_path / "keys.json").create("a", ["query", "ingest"])
    httpx.post(
        f"{server.url}/v1/documents",
        headers={"X-API-Key": key},
        json={"documents": [{"id": "bees.md", "text": BEES}, {"id": "kestrel.md", "text": KESTREL}], "wait": True},
    ).raise_for_status()
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page()
        page.goto(server.url)
        page.fill("#key", key)
        for n, question in enumerate(
            ["What does the waggle dance tell nest mates?", "Where in the hive does it happen?"], 1
        ):
            page.fill("#question", question)
            page.click("#send")
            page.wait_for_selector(f".turn:nth-child({n}) .status", timeout=30_000)
        turns = page.query_selector_all(".turn")
        seen = [
            {
                "question": t.query_selector(".question").inner_text(),
                "answer": t.query_selector(".answer").inner_text(),
                "refs": [r.inner_text() for r in t.query_selector_all(".sources .ref")],
                "passages": [q.inner_text() for q in t.query_selector_all(".sources blockquote")],
                "marks": [m.inner_text() for m in t.query_selector_all(".grounding li")],
            }
            for t in turns
        ]
        has_notice = page.query_selector("#notice") is not None
        page.screenshot(path=str(SCREENSHOTS / "chat-page.png"), full_page=True)
        browser.close()
    assert len(seen) == 2 and not has_notice  # the small-model notice is for the local generator only
    first, follow_up = seen
    assert "waggle dance" in first["answer"] and first["refs"] == ["[1] bees.md"]
    assert "how far away the flowers are" in first["passages"][0]
    assert first["marks"] and all(m.startswith("✓") for m in first["marks"])
    # "it" is the waggle dance: the follow-up was made standalone from the conversation
    assert "vertical wax comb" in follow_up["answer"], follow_up
    assert all(r.endswith("bees.md") for r in follow_up["refs"]) and follow_up["marks"][0].startswith("✓")


def test_the_page_warns_about_the_small_local_model(serve_app):
    server = serve_app(generator_name="local")
    page = httpx.get(server.url).text
    assert 'id="notice"' in page and "SmolLM2-135M" in page


def test_a_wrong_key_shows_the_error_in_the_page(serve_app):
    from playwright.sync_api import sync_playwright

    server = serve_app()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(server.url)
        page.fill("#key", "rl_wrong_key")
        page.fill("#question", "anything")
        page.click("#send")
        page.wait_for_selector("#status.error", timeout=15_000)
        status = page.inner_text("#status")
        browser.close()
    assert "401" in status and "invalid API key" in status


def test_the_api_docs_render_the_openapi_3_1_schema_offline(serve_app):
    from playwright.sync_api import sync_playwright

    server = serve_app()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page()
        page.on("requestfailed", lambda request: errors.append(request.url))
        page.goto(server.url + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        text = page.inner_text("body")
        page.screenshot(path=str(SCREENSHOTS / "docs.png"), full_page=False)
        browser.close()
    assert "Unable to render this definition" not in text and "/v1/query" in text
    assert not [url for url in errors if not url.startswith(server.url)]  # nothing fetched from elsewhere
