"""Screenshots of three pages of the built site with headless Chromium: home, a tutorial, an API page.

Usage: ``python docs/screenshots.py [SITE_DIR] [OUT_DIR]`` (defaults ``site`` and ``docs-screenshots``), after
``make docs``; ``make screenshots`` runs both. Needs Chromium (``apt-get install -y chromium``); the pages
are read from the disk (``file://``), so no server runs and nothing is fetched.

Writes ``OUT_DIR/home.png``, ``OUT_DIR/tutorial.png`` and ``OUT_DIR/api.png`` (1280 x 1600) and prints their
paths. Exits 1 with a message when Chromium or a page is missing, or when a screenshot was not written.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PAGES = {
    "home": "index.html",
    "tutorial": "tutorials/active_learning.html",
    "api": "reference/api.html",
}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
WINDOW = "1280,1600"


def browser() -> str:
    """The path of the first Chromium-like browser on ``PATH``."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(f"no Chromium found (looked for {', '.join(BROWSERS)}); apt-get install -y chromium")


def screenshot(chrome: str, url: str, png: Path) -> None:
    """One page to one PNG, in a throwaway browser profile."""
    with tempfile.TemporaryDirectory(prefix="forgetting-screenshot-") as profile:
        done = subprocess.run(
            [
                chrome,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW}",
                "--virtual-time-budget=3000",  # let the page's scripts (search, highlighting) settle
                f"--screenshot={png}",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if done.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        raise SystemExit(f"no screenshot of {url} (exit {done.returncode}):\n{done.stderr[-2000:]}")


def main(site: Path, out: Path) -> None:
    chrome = browser()
    out.mkdir(parents=True, exist_ok=True)
    for name, page in PAGES.items():
        path = site / page.split("#")[0]
        if not path.is_file():
            raise SystemExit(f"{path} is missing: build the site first (make docs)")
        fragment = page.partition("#")[2]
        url = path.resolve().as_uri() + (f"#{fragment}" if fragment else "")
        png = out / f"{name}.png"
        screenshot(chrome, url, png)
        print(png)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) > 2:
        raise SystemExit("usage: python docs/screenshots.py [SITE_DIR] [OUT_DIR]")
    main(Path(args[0] if args else "site"), Path(args[1] if len(args) > 1 else "docs-screenshots"))
