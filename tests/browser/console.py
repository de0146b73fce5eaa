"""Drives the web console in headless Chromium as a person would, against `ddb-backup serve`, and
prints what the page showed as one JSON object. Saves a screenshot of each state.

    console.py SCREENSHOT_DIR ALLOWED_PAGE_URL OTHER_ORIGIN_PAGE_URL API_KEY RESTORE_TABLE

ALLOWED_PAGE_URL opens the console from an origin the API allows; OTHER_ORIGIN_PAGE_URL from one
it does not. Chromium is Debian's (DDB_BACKUP_CHROMIUM); Playwright drives it and finds every
control by its accessible name, as a screen reader would.
"""

import hashlib
import json
import os
import pathlib
import re
import sys

from playwright.sync_api import expect, sync_playwright


def main():
    shots = pathlib.Path(sys.argv[1])
    allowed_url, other_url, key = sys.argv[2], sys.argv[3], sys.argv[4]
    restore_table = sys.argv[5]
    shots.mkdir(parents=True, exist_ok=True)
    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ["DDB_BACKUP_CHROMIUM"], headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)

        # A wrong key: the API's 403, as the page words it.
        page.goto(allowed_url)
        page.get_by_label("API key").fill("not-the-key")
        page.get_by_role("button", name="Show backups").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("403")
        seen["wrong_key"] = alert.inner_text()
        page.screenshot(path=shots / "1-wrong-key.png", full_page=True)

        # The right key: start a backup and follow it to the end.
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Back up now").click()
        status = page.get_by_role("status")
        expect(status).to_contain_text(re.compile(r"complete|failed"))
        seen["status"] = status.inner_text()
        seen["job_id"] = re.search(r"Backup (\S+)", seen["status"]).group(1)
        expect(page.get_by_role("button", name=f"Files of {seen['job_id']}")).to_be_visible()
        # Without change capture, the backup is the scan as read: marked fuzzy.
        newest = page.locator("#backups tbody tr").first
        expect(newest.locator("td").nth(8)).to_have_text("fuzzy")
        page.screenshot(path=shots / "2-complete.png", full_page=True)

        # The manifest's files, and one downloaded through its link.
        page.get_by_role("button", name=f"Files of {seen['job_id']}").click()
        links = page.locator("#file-list a")
        expect(links.nth(1)).to_be_visible()
        seen["files"] = [item.inner_text() for item in page.locator("#file-list li").all()]
        with page.expect_download() as info:
            links.nth(1).click()
        download = info.value
        saved = shots / download.suggested_filename
        download.save_as(saved)
        body = saved.read_bytes()
        seen["download"] = {
            "name": download.suggested_filename,
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        page.screenshot(path=shots / "3-files.png", full_page=True)

        # Restore that backup into a new table from its row, and follow the restore to its end.
        page.get_by_role("button", name=f"Restore {seen['job_id']}").click()
        page.get_by_label("New table").fill(restore_table)
        page.get_by_role("button", name="Start restore").click()
        expect(status).to_contain_text(re.compile(r"Restore \S+ into \S+ (complete|failed)"))
        seen["restore_status"] = status.inner_text()
        page.screenshot(path=shots / "4-restored.png", full_page=True)

        # From an origin the API does not allow, the browser blocks the call.
        other = browser.new_page(viewport={"width": 1280, "height": 600})
        other.set_default_timeout(30_000)
        other.goto(other_url)
        other.get_by_label("API key").fill(key)
        other.get_by_role("button", name="Show backups").click()
        blocked = other.get_by_role("alert")
        expect(blocked).to_contain_text("blocked")
        seen["other_origin"] = blocked.inner_text()
        other.screenshot(path=shots / "5-origin-not-allowed.png", full_page=True)
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
