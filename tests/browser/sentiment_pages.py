"""Drives the Sentiment pages in headless Chromium over WebDriver (Debian's
chromium-driver, Selenium's client), as a person would: opens the Sentiment
page, drags the intensity slider, changes the filter, opens a trace, looks at
the trend; or (--classify-trace) presses a trace's "Classify now". Prints what was on the screen at each step as one JSON object on
stdout (host/tests/view_browser.rs checks it against the stored rows) and
saves a screenshot of each page.

Every wait is bounded (page loads, element waits); chromedriver is always
stopped, also when a step fails.
"""

import argparse
import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_SECS = 20


def rows(driver):
    """The Sentiment page's rows as shown: trace, badge, bar width, link."""
    out = []
    for tr in driver.find_elements(By.CSS_SELECTOR, "#traces tr.trace"):
        badge = tr.find_element(By.CSS_SELECTOR, ".badge")
        fill = tr.find_element(By.CSS_SELECTOR, ".bar .fill")
        out.append({
            "trace": tr.find_element(By.CSS_SELECTOR, "a.trace-link").text,
            "badge": badge.text,
            "badge_class": badge.get_attribute("class"),
            "badge_visible": badge.is_displayed(),
            "bar_style": fill.get_attribute("style"),
            "bar_px": fill.size["width"],
            "bar_total_px": tr.find_element(By.CSS_SELECTOR, ".bar").size["width"],
        })
    return out


def wait_for_url(driver, needle):
    WebDriverWait(driver, WAIT_SECS).until(lambda d: needle in d.current_url)
    WebDriverWait(driver, WAIT_SECS).until(EC.presence_of_element_located((By.ID, "traces")))


def trace_generations(driver):
    """The trace page's generations as shown: uuid, badge, and per message
    its badge, its bar's hover text and width, its text."""
    generations = []
    for tr in driver.find_elements(By.CSS_SELECTOR, "#generations tr.generation"):
        messages = []
        for m in tr.find_elements(By.CSS_SELECTOR, ".message"):
            bar = m.find_element(By.CSS_SELECTOR, ".bar")
            texts = m.find_elements(By.CSS_SELECTOR, ".text")
            messages.append({
                "badge": m.find_element(By.CSS_SELECTOR, ".badge").text,
                "hover": bar.get_attribute("title"),
                "bar_px": m.find_element(By.CSS_SELECTOR, ".fill").size["width"],
                "bar_total_px": bar.size["width"],
                "text": texts[0].text if texts else None,
            })
        generations.append({
            "uuid": tr.get_attribute("data-generation"),
            "badge": tr.find_element(By.CSS_SELECTOR, "td .badge").text,
            "messages": messages,
        })
    return generations


def classify_on_demand(driver, args):
    """Opens a trace with no sentiment yet, presses "Classify now", and
    notes the page before and after."""
    driver.get(f"{args.base}/traces/{args.classify_trace}?team={args.team}")
    WebDriverWait(driver, WAIT_SECS).until(EC.presence_of_element_located((By.ID, "generations")))
    before = {
        "summary": driver.find_element(By.ID, "summary").text,
        "generations": trace_generations(driver),
        "buttons": len(driver.find_elements(By.ID, "classify")),
    }
    driver.find_element(By.ID, "classify").click()
    # The classification runs inside the request: a minute at most here.
    WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.ID, "classified")))
    after = {
        "url": driver.current_url,
        "notice": driver.find_element(By.ID, "classified").text,
        "summary": driver.find_element(By.ID, "summary").text,
        "generations": trace_generations(driver),
    }
    driver.save_screenshot(f"{args.shots}/trace-classified.png")
    return {"before": before, "after": after}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--team", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--shots", required=True, help="directory for the screenshots")
    ap.add_argument("--classify-trace", help="only this: press the trace's Classify now button")
    args = ap.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"]:
        options.add_argument(a)
    service = Service(executable_path=args.chromedriver)
    driver = webdriver.Chrome(service=service, options=options)
    seen = {}
    try:
        driver.set_page_load_timeout(WAIT_SECS)
        driver.set_script_timeout(WAIT_SECS)
        if args.classify_trace:
            seen = classify_on_demand(driver, args)
            return
        # 1. The Sentiment page of one team, as it opens.
        driver.get(f"{args.base}/?team={args.team}")
        WebDriverWait(driver, WAIT_SECS).until(EC.presence_of_element_located((By.ID, "traces")))
        seen["initial"] = {"url": driver.current_url, "summary": driver.find_element(By.ID, "summary").text, "rows": rows(driver)}
        driver.save_screenshot(f"{args.shots}/sentiment-page.png")

        # 2. Drag the slider's thumb from its left end to the middle; on release the form is sent.
        slider = driver.find_element(By.ID, "min")
        width = slider.size["width"]
        ActionChains(driver).move_to_element_with_offset(slider, -width // 2 + 3, 0).click_and_hold() \
            .move_by_offset(width // 2, 0).release().perform()
        wait_for_url(driver, "min=")
        seen["slider"] = {
            "url": driver.current_url,
            "value": driver.find_element(By.ID, "min").get_attribute("value"),
            "shown": driver.find_element(By.ID, "min-value").text,
            "rows": rows(driver),
        }

        # 3. Positive and negative together.
        Select(driver.find_element(By.ID, "filter")).select_by_value("both")
        wait_for_url(driver, "filter=both")
        seen["both"] = {"url": driver.current_url, "rows": rows(driver)}
        driver.save_screenshot(f"{args.shots}/sentiment-page-both.png")

        # 4. The first trace, by its link.
        driver.find_element(By.CSS_SELECTOR, "#traces tr.trace a.trace-link").click()
        WebDriverWait(driver, WAIT_SECS).until(EC.presence_of_element_located((By.ID, "generations")))
        generations = trace_generations(driver)
        seen["trace"] = {
            "url": driver.current_url,
            "trace_id": driver.find_element(By.ID, "trace-id").text,
            "generations": generations,
        }
        driver.save_screenshot(f"{args.shots}/trace-page.png")

        # 5. The trend of the team.
        driver.get(f"{args.base}/trend?team={args.team}")
        WebDriverWait(driver, WAIT_SECS).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#counts-chart svg")))
        chart = driver.find_element(By.CSS_SELECTOR, "#counts-chart svg")
        seen["trend"] = {
            "summary": driver.find_element(By.ID, "summary").text,
            "svg_size": chart.size,
            "lines": len(driver.find_elements(By.CSS_SELECTOR, "#counts-chart svg polyline")),
            "texts": [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#counts-chart svg text")],
            "means_chart": len(driver.find_elements(By.CSS_SELECTOR, "#means-chart svg")),
        }
        driver.save_screenshot(f"{args.shots}/trend-page.png")
    finally:
        # Also stops chromedriver (the service), whatever happened above.
        try:
            driver.quit()
        finally:
            service.stop()
        json.dump(seen, sys.stdout)
        print()


if __name__ == "__main__":
    main()
