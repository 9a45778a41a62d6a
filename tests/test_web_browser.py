"""The dashboard in a real browser: Debian's chromium and chromedriver, headless, via selenium.

The page loads without a console error, its charts and figures follow the cache's traffic,
an invalidation typed into its form removes the key, and it fits a phone's width.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from kirocache import Cache
from kirocache.web import admin_app
from web_helpers import ADMIN, FEED, SEARCH, USERS, serving

pytestmark = pytest.mark.slow

WAIT = 30.0  # seconds a condition may take on a loaded machine; never asserted as a duration


def _tool(name: str, *fallbacks: str) -> str:
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate)
        if found:
            return found
    reason = f"{name} not found (apt-get install chromium chromium-driver)"
    if os.environ.get("KIROCACHE_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason}; KIROCACHE_REQUIRE_REDIS=1 requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = _tool("chromium", "chromium-browser")
    driver_path = _tool("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def errors_in_console(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_dashboard_follows_the_cache_and_invalidates_from_its_form(browser: Any) -> None:
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    cache = Cache.from_url("memory://", key_prefix="app:", namespaces=[USERS, FEED, SEARCH])
    cache.set("user:1", {"name": "Ada"})
    cache.get("user:1")
    app = admin_app(cache, token=ADMIN, poll_interval=0.5)
    wait = WebDriverWait(browser, WAIT)
    with serving(app) as base:
        browser.get(base + "/")
        assert "Type a token" in browser.find_element("id", "message").text
        browser.find_element("id", "token").send_keys(ADMIN)
        browser.find_element("id", "login").submit()
        wait.until(lambda d: "admin" in d.find_element("id", "who").text)
        wait.until(lambda d: d.find_element("id", "hit-rate").text == "100.0 %")
        chart = browser.find_element("id", "chart-hit")
        wait.until(lambda _: int(chart.get_attribute("data-samples")) >= 2)
        before = browser.execute_script("return arguments[0].toDataURL()", chart)

        for i in range(3):  # 3 misses more: 1 hit of 4 reads
            cache.get(f"user:missing{i}")
        wait.until(lambda d: d.find_element("id", "hit-rate").text == "25.0 %")
        wait.until(
            lambda _: browser.execute_script("return arguments[0].toDataURL()", chart) != before
        )
        rows = browser.find_elements("css selector", "#namespaces tbody tr")
        assert any(row.text.startswith("user:") and "25.0 %" in row.text for row in rows)
        assert stored_token(browser) == ADMIN

        Select(browser.find_element("id", "kind")).select_by_value("key")
        browser.find_element("id", "target").send_keys("user:1")
        browser.find_element("id", "invalidate").submit()
        wait.until(lambda d: d.find_element("id", "result").text.startswith("Removed 1"))
        assert cache.get("user:1") is None
        wait.until(lambda d: "http by admin" in d.find_element("id", "log").text)

        cache.set("search:rust", ["book"], tags=["lang"])
        browser.find_element("id", "pattern").clear()
        browser.find_element("id", "pattern").send_keys("search:*")
        browser.find_element("id", "keys-form").submit()
        wait.until(lambda d: "search:rust" in d.find_element("id", "keys").text)
        browser.find_element("css selector", "#keys li").click()
        wait.until(lambda d: "json" in d.find_element("id", "entry").text)
        assert "lang" in browser.find_element("id", "entry").text
        browser.find_element("css selector", "#entry button").click()  # show the value
        wait.until(lambda d: '"book"' in d.find_element("css selector", "#entry pre").text)

        browser.set_window_size(390, 844)  # a phone
        wide = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert wide <= 0
        assert errors_in_console(browser) == []
    cache.close()


def stored_token(driver: Any) -> str:
    value: str = driver.execute_script("return sessionStorage.getItem('kirocache.token')")
    return value
