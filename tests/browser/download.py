"""Downloads URLs with headless Chromium, as a person clicking a download link would, and prints
what was saved: one JSON object per URL with the suggested file name, size and SHA-256.

    download.py OUT_DIR URL [URL ...]

Chromium is Debian's (DDB_BACKUP_CHROMIUM, installed by scripts/browser.sh); Playwright drives it.
"""

import hashlib
import json
import os
import pathlib
import sys

from playwright.sync_api import sync_playwright


def main():
    out = pathlib.Path(sys.argv[1])
    urls = sys.argv[2:]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ["DDB_BACKUP_CHROMIUM"],
            headless=True,
            args=["--no-sandbox"],
        )
        page = browser.new_page(accept_downloads=True)
        for n, url in enumerate(urls):
            page.set_content(f'<a id="link" href="{url}">download</a>')
            with page.expect_download() as info:
                page.click("#link")
            download = info.value
            target = out / f"{n}-{download.suggested_filename}"
            download.save_as(target)
            body = target.read_bytes()
            print(json.dumps({
                "url": url,
                "suggested_filename": download.suggested_filename,
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }))
        browser.close()


if __name__ == "__main__":
    main()
