"""The admin console and the API docs in a real browser: headless Chromium driven by Selenium.

The browser may reach only loopback (every other host name fails to resolve), so the pages
prove they need no CDN. Screenshots go to ``tests/artifacts/browser/`` (ignored by git; CI
keeps them). Skipped without chromium and chromedriver unless ``REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.manager import ADMIN_TOKEN, Manager, auth

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_DRIVER = shutil.which("chromedriver")

if not (_CHROMIUM and _DRIVER):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise RuntimeError("REQUIRE_BROWSER=1 but chromium or chromedriver is not installed")
    pytest.skip(
        "no chromium + chromedriver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 - only where a browser exists
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

Driver = webdriver.Chrome
pytestmark = pytest.mark.browser


@pytest.fixture(name="browser")
def fx_browser(tmp_path: Path) -> Iterator[Driver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(_CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
        # No network but loopback: a page that needs a CDN renders blank here.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(_DRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver: Driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _wait(driver: Driver, seconds: float = 20) -> WebDriverWait[Driver]:
    return WebDriverWait(driver, seconds)


def _console(driver: Driver, base_url: str, keep: str, remove: str) -> None:
    """Log in, find both sessions, delete one, see it gone and the other still there."""
    driver.get(f"{base_url}/console")
    _wait(driver).until(expected_conditions.presence_of_element_located((By.ID, "token")))
    assert driver.current_url.endswith("/console/login")
    driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    driver.find_element(By.ID, "login").click()
    _wait(driver).until(expected_conditions.presence_of_element_located((By.ID, "sessions")))
    rows = {
        row.get_attribute("data-session")
        for row in driver.find_elements(By.CSS_SELECTOR, "#sessions tr[data-session]")
    }
    assert {keep, remove} <= rows, rows
    assert driver.find_element(By.ID, "stats").is_displayed()
    _screenshot(driver, "console-sessions")

    button = driver.find_element(
        By.CSS_SELECTOR, f'tr[data-session="{remove}"] button[data-action="delete"]'
    )
    button.click()
    _wait(driver).until(expected_conditions.alert_is_present()).accept()  # the confirm()
    _wait(driver).until(expected_conditions.presence_of_element_located((By.CLASS_NAME, "notice")))
    assert "delete: done" in driver.find_element(By.CLASS_NAME, "notice").text
    rows = {
        row.get_attribute("data-session")
        for row in driver.find_elements(By.CSS_SELECTOR, "#sessions tr[data-session]")
    }
    assert remove not in rows
    assert keep in rows
    _screenshot(driver, "console-after-delete")

    driver.find_element(By.LINK_TEXT, keep).click()
    _wait(driver).until(expected_conditions.presence_of_element_located((By.CLASS_NAME, "genes")))
    assert keep in driver.find_element(By.TAG_NAME, "h1").text
    _screenshot(driver, "console-session")


def _api_docs(driver: Driver, base_url: str) -> None:
    """Swagger UI renders from packaged files: title and a proxied processor route shown."""
    for path in ("/schema", "/schema/swagger"):
        driver.get(f"{base_url}{path}")
        title = _wait(driver).until(
            expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, ".info .title"))
        )
        assert "kato-sessions manager" in title.text
        observe = '.opblock-summary-path[data-path="/session/{session_id}/observe"]'
        _wait(driver).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, observe))
        )
    _screenshot(driver, "api-docs")


async def test_console_and_api_docs_in_headless_chromium(manager: Manager, browser: Driver) -> None:
    keep = await manager.create(user_id="browser-keep")
    remove = await manager.create(user_id="browser-remove")
    await asyncio.to_thread(
        _console, browser, manager.base_url, keep["session_id"], remove["session_id"]
    )
    await asyncio.to_thread(_api_docs, browser, manager.base_url)
    gone = await manager.client.get(f"/session/{remove['session_id']}", headers=auth(remove))
    assert gone.status_code == 410
    alive = await manager.client.get(f"/session/{keep['session_id']}", headers=auth(keep))
    assert alive.json()["status"] == "ready"
    assert (ARTIFACTS / "console-after-delete.png").stat().st_size > 1000
