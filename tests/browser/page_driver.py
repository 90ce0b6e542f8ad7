"""Headless Chromium (Debian's chromium and chromium-driver, driven by selenium) on a prediction page.

Shared by the browser tests and the screenshot script. The machine may have no internet: the
flags keep Chromium from the network lookups (updates, sync, field trials, QUIC probes) that
would otherwise stall it, and every run gets a fresh profile.
"""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
WAIT_S = 30  # for a page to load, and for an answer (a cold Lambda function included)
WINDOW = (1000, 800)


def missing() -> list[str]:
    return [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]


def start_chromium(profile: Path, window: tuple[int, int] = WINDOW) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    return driver


class PredictionPage:
    """One prediction page in the browser, read and driven the way a person uses it."""

    def __init__(self, driver: webdriver.Chrome, url: str):
        self.driver = driver
        driver.get(url)
        self._wait_for(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true",
            f"{url} did not finish loading (its script did not run)",
        )

    def _wait_for(self, condition, message: str):
        try:
            return WebDriverWait(self.driver, WAIT_S).until(condition)
        except TimeoutException:
            raise AssertionError(f"{message} within {WAIT_S} s; the page shows: {self.text('body')!r}") from None

    def text(self, css: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def features(self) -> list[tuple[str, str]]:
        """Each input's label: (feature name, range hint)."""
        return [
            (field.find_element(By.CSS_SELECTOR, ".name").text, field.find_element(By.CSS_SELECTOR, ".range").text)
            for field in self.all("#features .feature")
        ]

    def values(self) -> list[str]:
        return [field.get_attribute("value") for field in self.all("#features input")]

    def paste_row(self, row: str) -> None:
        box = self.driver.find_element(By.ID, "csv")
        box.clear()
        box.send_keys(row)

    def type_values(self, values) -> None:
        for field, value in zip(self.all("#features input"), values, strict=True):
            field.clear()
            field.send_keys(str(value))

    def set_key(self, key: str) -> None:
        field = self.driver.find_element(By.ID, "key")
        field.clear()
        field.send_keys(key)

    def key(self) -> str:
        return self.driver.find_element(By.ID, "key").get_attribute("value")

    def predict(self) -> str:
        """Press Predict and wait for the answer; returns the result's kind (its class)."""
        self.driver.find_element(By.ID, "predict").click()

        def answered(driver):
            result = driver.find_element(By.ID, "result")
            done = driver.find_element(By.ID, "predict").is_enabled() and "idle" not in result.get_attribute("class")
            return result.get_attribute("class") if done else False

        return self._wait_for(answered, "no answer was shown")

    def bars(self) -> list[tuple[str, float]]:
        """The probability bars: (class label, probability), in the page's order."""
        return [
            (
                row.get_attribute("data-label"),
                float(row.find_element(By.CSS_SELECTOR, ".bar-track").get_attribute("aria-valuenow")),
            )
            for row in self.all("#result .bar-row")
        ]
