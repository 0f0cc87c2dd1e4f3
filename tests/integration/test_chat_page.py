"""The chat page in headless Chromium: type a question, see a streamed answer and its source."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from ragline.api.auth import KeyStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).parents[2] / "test-results"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("RAGLINE_REQUIRE_TOOLS") != "1",
    reason="needs Debian's chromium (scripts/setup.sh --test installs it)",
)

BEES = "Honeybees perform the waggle dance to tell nest mates how far away the flowers are."


def test_a_question_typed_in_the_page_gets_a_streamed_answer_and_a_source(serve_app, tmp_path):
    from playwright.sync_api import sync_playwright

    server = serve_app()
    key, _ = KeyStore(tmp_path / "keys.json").create("a", ["query", "ingest"])
    httpx.post(
        f"{server.url}/v1/documents",
        headers={"X-API-Key": key},
        json={"documents": [{"id": "bees.md", "text": BEES}], "wait": True},
    ).raise_for_status()
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.goto(server.url)
        page.fill("#key", key)
        page.fill("#question", "What does the waggle dance tell nest mates?")
        page.click("#send")
        page.wait_for_selector("#sources li", timeout=30_000)
        answer, source = page.inner_text("#answer"), page.inner_text("#sources li")
        page.screenshot(path=str(SCREENSHOTS / "chat-page.png"), full_page=True)
        browser.close()
    assert "waggle dance" in answer
    assert source == "[1] bees.md"


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
