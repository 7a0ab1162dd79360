"""Opens the Superset dashboard in headless Chromium and reports what each chart shows.

Run by tests/test_superset.py with the Superset environment's Python (its locked selenium,
Debian's chromium and chromium-driver; no browser is downloaded):

    python tests/superset_browser.py URL USER PASSWORD DASHBOARD_SLUG SCREENSHOT PROFILE_DIR

Prints one JSON object: per chart its title, whether it drew (a canvas or svg with size),
any error text, and the chart data requests the page sent (their query contexts).
"""

from __future__ import annotations

import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1600,1300",
]
TIMEOUT_S = 90

# Every chart on the dashboard (not the markdown note): its title, whether it drew, and the
# text of any error panel.
CHARTS_JS = """
return Array.from(document.querySelectorAll('.dashboard-component-chart-holder'))
    .filter(h => h.querySelector('.chart-slice, .dashboard-chart') !== null).map(h => {
  const title = h.querySelector('[data-test="editable-title"], .header-title, .editable-title');
  const drawn = Array.from(h.querySelectorAll('canvas, svg')).some(
      e => e.getBoundingClientRect().width > 100 && e.getBoundingClientRect().height > 100);
  const errors = Array.from(h.querySelectorAll(
      '.ant-alert-error, [data-test="alert"], .error-message, [role="alert"]'))
      .map(e => e.innerText.trim()).filter(t => t);
  const loading = h.querySelector('[data-test="loading-indicator"], .loading') !== null;
  return {title: title ? title.innerText.trim() : null, drawn, errors, loading};
});
"""


def main() -> None:
    url, user, password, slug, screenshot, profile = sys.argv[1:7]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(TIMEOUT_S)
    try:
        driver.get(f"{url}/login/")
        WebDriverWait(driver, TIMEOUT_S).until(
            expected_conditions.presence_of_element_located((By.ID, "username"))
        )
        driver.find_element(By.ID, "username").send_keys(user)
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "[type=submit]").click()
        WebDriverWait(driver, TIMEOUT_S).until(lambda d: "/login" not in d.current_url)
        driver.get(f"{url}/superset/dashboard/{slug}/")
        deadline = time.monotonic() + TIMEOUT_S
        charts: list[dict] = []
        while time.monotonic() < deadline:
            charts = driver.execute_script(CHARTS_JS)
            if charts and all((c["drawn"] or c["errors"]) and not c["loading"] for c in charts):
                break
            time.sleep(1)
        time.sleep(2)  # let the charts' animations end before the screenshot
        charts = driver.execute_script(CHARTS_JS)
        driver.save_screenshot(screenshot)
        page_errors = driver.execute_script(
            "return Array.from(document.querySelectorAll('.ant-alert-error, .error-message'))"
            ".map(e => e.innerText.trim())"
        )
        requests = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] != "Network.requestWillBeSent":
                continue
            request = message["params"]["request"]
            if "/api/v1/chart/data" in request["url"] and request.get("postData"):
                requests.append(json.loads(request["postData"]))
        print(
            json.dumps(
                {
                    "url": driver.current_url,
                    "charts": charts,
                    "page_errors": page_errors,
                    "chart_data_requests": requests,
                }
            )
        )
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
