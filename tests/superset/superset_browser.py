"""Headless Debian Chromium driven by Selenium: log in to Superset, open a dashboard, collect
what every chart's data request answered (from Chrome's network log), screenshot it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-extensions", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--mute-audio", "--window-size=1600,2400"]


def start_driver() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    return driver


def login(driver: webdriver.Chrome, base: str, user: str, password: str) -> None:
    driver.get(f"{base}/login/")
    deadline = time.time() + 60
    while time.time() < deadline:
        fields = driver.find_elements(By.CSS_SELECTOR, "input#username, input[name=username]")
        if fields:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no login form at {base}/login/: {driver.page_source[:500]}")
    for attempt in range(2):  # a Superset still warming up on a busy machine may drop the first submit
        fields = driver.find_elements(By.CSS_SELECTOR, "input#username, input[name=username]")
        if not fields:
            break
        fields[0].clear()
        fields[0].send_keys(user)
        secret = driver.find_element(By.CSS_SELECTOR, "input#password, input[name=password]")
        secret.clear()
        secret.send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        deadline = time.time() + 60
        while time.time() < deadline and "/login" in driver.current_url:
            time.sleep(0.5)
        if "/login" not in driver.current_url:
            break
    page = driver.find_element(By.TAG_NAME, "body").text[:300] if "/login" in driver.current_url else ""
    assert "/login" not in driver.current_url, f"login failed: {page}"


@dataclass
class ChartAnswer:
    slice_id: int | None
    status: int
    rowcount: int | None = None
    error: str | None = None
    payload: dict = field(default_factory=dict, repr=False)  # the API's JSON answer (axis checks)


@dataclass
class DashboardView:
    chart_holders: int
    error_elements: list[str]
    answers: list[ChartAnswer] = field(default_factory=list)
    seconds: float = 0.0

    def latest(self) -> dict[int | None, ChartAnswer]:
        """The last answer per chart (a filter applied on load re-queries the charts)."""
        return {a.slice_id: a for a in self.answers}


class ChartTraffic:
    """The dashboard's /api/v1/chart/data requests, from Chrome's performance (network) log."""

    def __init__(self, driver: webdriver.Chrome):
        self.driver = driver
        self.requests: dict[str, dict] = {}

    def poll(self) -> None:
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            params = msg.get("params", {})
            rid = params.get("requestId")
            if msg["method"] == "Network.requestWillBeSent" and "/api/v1/chart/data" in params["request"]["url"]:
                try:
                    slice_id = json.loads(params["request"].get("postData") or "{}").get("form_data", {}).get("slice_id")
                except ValueError:
                    slice_id = None
                self.requests[rid] = {"slice_id": slice_id, "status": 0, "done": False}
            elif rid in self.requests and msg["method"] == "Network.responseReceived":
                self.requests[rid]["status"] = params["response"]["status"]
            elif rid in self.requests and msg["method"] in ("Network.loadingFinished", "Network.loadingFailed"):
                self.requests[rid]["done"] = True
                self.requests[rid]["answer"] = self._answer(rid)

    def _answer(self, rid: str) -> ChartAnswer:
        req = self.requests[rid]
        answer = ChartAnswer(req["slice_id"], req["status"])
        try:
            body = self.driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": rid})["body"]
            payload = json.loads(body)
            answer.payload = payload
            results = payload.get("result") or []
            answer.rowcount = sum(int(r.get("rowcount") or 0) for r in results)
            errors = [r.get("error") for r in results if r.get("error")] or payload.get("errors")
            answer.error = json.dumps(errors)[:500] if errors else None
        except Exception as exc:  # noqa: BLE001 - reported in the answer
            answer.error = f"no body: {str(exc).splitlines()[0][:200]}"
        return answer

    def finished(self) -> list[ChartAnswer]:
        return [r["answer"] for r in self.requests.values() if r["done"]]

    def pending(self) -> int:
        return sum(not r["done"] for r in self.requests.values())


def open_dashboard(driver: webdriver.Chrome, base: str, slug: str, expected_charts: int,
                   screenshot: Path, timeout: float = 120) -> DashboardView:
    driver.get_log("performance")  # drop earlier traffic
    traffic = ChartTraffic(driver)
    t0 = time.time()
    driver.get(f"{base}/superset/dashboard/{slug}/?standalone=1")
    deadline = time.time() + timeout
    while time.time() < deadline:
        traffic.poll()
        holders = driver.find_elements(By.CSS_SELECTOR, '[data-test="chart-grid-component"]')
        loading = driver.find_elements(By.CSS_SELECTOR, '[data-test="loading-indicator"]')
        answered = {a.slice_id for a in traffic.finished()}
        if len(holders) >= expected_charts and not loading and not traffic.pending() and len(answered) >= expected_charts:
            break
        time.sleep(0.5)
    time.sleep(1.5)  # let the last charts paint
    traffic.poll()
    seconds = time.time() - t0
    errors = [e.text[:200] or e.get_attribute("class")
              for e in driver.find_elements(By.CSS_SELECTOR, '.ant-alert-error, [data-test="error-tooltip"], '
                                                              '.alert-danger, [role="alert"]')]
    driver.save_screenshot(str(screenshot))
    holders = driver.find_elements(By.CSS_SELECTOR, '[data-test="chart-grid-component"]')
    return DashboardView(len(holders), errors, traffic.finished(), seconds)


def rendered_charts(driver: webdriver.Chrome) -> list:
    """Every chart of the open dashboard as drawn: ECharts axes, series and texts (chart_checks)."""
    from chart_checks import RENDERED_JS, Rendered

    return [Rendered(c["slice_id"], c["name"], c["viz"], c["text"], c["echarts"], c["instances"])
            for c in driver.execute_script(RENDERED_JS)]
