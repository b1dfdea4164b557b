"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium) against ``xsell serve`` (gunicorn, two workers sharing the session
secret). Any browser console error fails the test. A screenshot of each view is written to
``$XSELL_SCREENSHOTS`` (default: a temporary folder, printed).

scripts/test.sh installs the browser when it is missing; without it these tests skip
(and fail under CI).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from support.http import Server, request
from tests.service.dashboard_data import ADMIN_KEY, CRM_KEY, KEYS, copy_models

pytestmark = pytest.mark.slow

with open(os.path.join(os.path.dirname(__file__), "a11y_check.js"), encoding="utf-8") as _fh:
    A11Y_CHECK = _fh.read()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _driver():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed (scripts/test.sh "
                        "installs them)")
        pytest.skip("chromium and chromium-driver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # CI runs as root in a fresh container: no sandbox there; no GPU, small /dev/shm.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--disable-extensions",
                 "--no-first-run", "--disable-background-networking"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = os.environ.get("XSELL_SCREENSHOTS") or str(tmp_path_factory.mktemp("screenshots"))
    os.makedirs(folder, exist_ok=True)
    print(f"\ndashboard screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def served(dashboard_models, tmp_path_factory):
    models, older, newer = dashboard_models
    models_dir = copy_models(models, tmp_path_factory.mktemp("browser") / "models")
    server = Server(models_dir, workers=2, reload_interval=0.5,
                    env={"XSELL_API_KEYS": KEYS, "XSELL_METRICS": "true"})
    try:
        server.wait_ready()
        yield server, older, newer
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    driver = _driver()
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser plus the checks every step makes (no console error) and screenshots."""

    def __init__(self, driver, base: str, folder: str):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.base = base
        self.folder = folder
        # Live lists are redrawn while we read them.
        self.wait = WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,))

    def go(self, path: str):
        self.driver.get(self.base + path)
        self.ready()

    def navigate(self, action):
        """Do ``action`` (a click, Enter in a form) and wait for the next page to load."""
        from selenium.webdriver.support import expected_conditions

        old = self.css("html")
        action()
        self.wait.until(expected_conditions.staleness_of(old))
        self.ready()

    def ready(self):
        self.wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def path(self) -> str:
        return self.driver.current_url[len(self.base):]

    def no_console_errors(self):
        errors = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

    def expect_refusal(self, status: int):
        """The browser logs a refused page load as a console error: that one, and no other."""
        errors = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors and all(f"status of {status}" in e["message"] for e in errors), errors

    def accessible(self):
        problems = self.driver.execute_script(A11Y_CHECK)
        assert not problems, problems

    def shot(self, name: str, width: int = 1280):
        self.driver.set_window_size(width, 900)
        height = self.driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
        self.driver.set_window_size(width, min(max(int(height) + 20, 600), 4000))
        self.driver.save_screenshot(os.path.join(self.folder, f"{name}.png"))
        self.driver.set_window_size(1280, 900)
        self.no_console_errors()
        self.accessible()

    def column(self, table_id: str) -> list[str]:
        return [r.get_attribute("data-item") for r in self.all(f"#{table_id} tbody tr")]


def test_workbench_in_a_real_browser(served, browser, screenshots):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    server, older, newer = served
    page = Page(browser, server.base, screenshots)

    # Not signed in: every view sends the browser to the sign-in form.
    page.go("/dashboard/versions")
    assert page.path().startswith("/dashboard/sign-in")
    page.shot("01-sign-in")
    page.navigate(lambda: page.css("#key").send_keys(CRM_KEY + Keys.ENTER))
    assert "not an admin key" in page.css("#sign-in-error").text
    page.expect_refusal(401)
    page.navigate(lambda: page.css("#key").send_keys(ADMIN_KEY + Keys.ENTER))
    assert page.path() == "/dashboard/versions"
    page.navigate(lambda: page.css('a[href="/dashboard/"]').click())
    assert newer in page.css("h1").text
    page.shot("02-overview")
    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element.get_attribute("class") == "skip"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "main"

    # Items: search by part of a name as you type, open the item.
    page.navigate(lambda: page.css('nav a[href="/dashboard/items"]').click())
    page.css("#q").send_keys("lb pack 3")
    page.wait.until(lambda d: [e.text for e in page.all("#item-results .id")] == ["B3"])
    page.shot("03-item-search")
    page.navigate(lambda: page.css("#item-results a").click())
    assert page.path() == "/dashboard/items/B3"
    assert "Bulb pack 3" in page.css("h1").text
    before = page.column("list-also-bought")
    assert before[0] == "A3"
    assert int(page.css("#likely-buyers").text.split()[0]) > 0
    page.shot("04-item")
    # A price filter changes the list: only items up to 3 remain (the 2.00 napkins).
    page.css("#max_price").send_keys("3")
    page.navigate(lambda: page.css("#filters button[type=submit]").click())
    assert "max_price=3" in page.path()
    after = page.column("list-also-bought")
    assert after and after != before and all(i.startswith("P") for i in after)
    prices = [td.text for td in page.all("#list-also-bought tbody td:nth-child(5)")]
    assert prices and all(float(p) <= 3 for p in prices)
    page.shot("05-item-filtered")
    page.shot("05b-item-phone", width=390)

    # A customer: history with dates beside next-best, the driving item highlighted.
    page.navigate(lambda: page.css('nav a[href="/dashboard/customers"]').click())
    page.navigate(lambda: page.css("#q").send_keys("Q3_0" + Keys.ENTER))
    page.navigate(lambda: page.css("#customer-results a").click())
    assert page.path() == "/dashboard/customers/Q3_0"
    assert page.column("list-next-best-products")[0] == "B3"
    driver_row = page.css('#history tr[data-item="A3"]')
    assert "driver" in driver_row.get_attribute("class")
    assert "2025-02-10" in driver_row.text
    page.shot("06-customer")

    # Versions: roll back to the older version through the confirmation page.
    page.navigate(lambda: page.css('nav a[href="/dashboard/versions"]').click())
    page.wait.until(lambda d: page.all("figure.chart svg"))
    page.shot("07-versions")
    page.navigate(lambda: page.css(f'a[data-promote="{older}"]').click())
    page.shot("08-promote-confirm")
    page.navigate(lambda: page.css("#confirm-promote").click())
    assert page.path() == "/dashboard/versions"
    assert f"{older} is now the current version" in page.css("#flash").text
    assert page.css("#served-version").text == older
    # The service answers with it (every worker within its reload interval).
    deadline, seen = time.time() + 15, set()
    while time.time() < deadline:
        seen = {request(server.port, "GET", "/v1/items/A3/also-bought",
                        headers={"X-API-Key": ADMIN_KEY})[2]["model_version"] for _ in range(6)}
        if seen == {older}:
            break
        time.sleep(0.3)
    assert seen == {older}
    page.go(f"/dashboard/versions/compare?a={older}&b={newer}")
    assert page.css("#mean-overlap").text == "1.00"
    page.shot("09-compare")

    # Health: charts drawn from the service's metrics, refreshed by the page itself.
    page.go("/dashboard/health")
    page.wait.until(lambda d: page.all("#health-rps svg path"))
    page.wait.until(lambda d: "items.also_bought" in page.css("#health-table").text)
    page.shot("10-health")
    # ... and redraws them by itself every sampling interval.
    first = page.css("#health-updated").text
    WebDriverWait(browser, 30).until(lambda d: page.css("#health-updated").text != first)
    assert "Updated" in page.css("#health-updated").text

    # Sign out, then be refused.
    page.navigate(lambda: page.css(".signout button").click())
    assert page.path().startswith("/dashboard/sign-in")
    page.go("/dashboard/items/B3")
    assert page.path().startswith("/dashboard/sign-in?next=")
    status, _, body = request(server.port, "GET", "/dashboard/api/items?q=B")
    assert status == 401
    page.no_console_errors()
