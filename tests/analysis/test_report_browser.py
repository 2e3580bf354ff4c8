"""The HTML report rendered by a real headless Chromium: every plot loads, no console error.

Checking the HTML text (tests/analysis/test_analysis.py) cannot tell whether a browser actually decodes the
embedded PNGs or trips over the page's script; only a browser can. No DevTools client is needed:
the report's own inline script marks every ``<img>`` with ``data-loaded`` and writes
``loaded=N failed=M total=T`` into ``#img-status``, which ``--dump-dom`` prints after the load event,
and Chromium's ``--enable-logging=stderr`` prints every console message as a ``CONSOLE`` line.

Chromium comes from the system (Debian/Ubuntu: ``apt-get install -y chromium``). Without it the
test is skipped, unless ``TUNE_SCHANE_REQUIRE_BROWSER`` is set (CI, ``make test``), where a missing
browser fails it. ``TUNE_SCHANE_SCREENSHOT`` names where to keep the screenshot (for the docs).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tune_schane.analysis.command import analyze_command

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser")
WIDTH, HEIGHT = 1280, 2000
TIMEOUT_S = 90


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = f"no headless browser on PATH (looked for {', '.join(BROWSERS)}; apt-get install -y chromium)"
    if os.environ.get("TUNE_SCHANE_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{browser} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def _console_errors(stderr: str) -> list[str]:
    """Console lines: the report logs nothing, so any console message (error or not) is a finding."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def _img_status(dom: str) -> dict[str, int]:
    match = re.search(r'<span id="img-status">loaded=(\d+) failed=(\d+) total=(\d+)</span>', dom)
    assert match, "the report's image counter did not run (no loaded=/failed= in #img-status)"
    return dict(zip(("loaded", "failed", "total"), map(int, match.groups()), strict=True))


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_report_renders_in_headless_chromium(tmp_path, capsys, small_store):
    browser = _browser()
    assert analyze_command(str(small_store), "s1", str(tmp_path / "report")) == 0
    capsys.readouterr()
    page = tmp_path / "report" / "report.html"
    url = page.resolve().as_uri()
    n_images = page.read_text(encoding="utf-8").count("<img ")
    assert n_images >= 6

    dom = _run(browser, tmp_path / "profile-dom", "--dump-dom", url)
    assert _img_status(dom.stdout) == {"loaded": n_images, "failed": 0, "total": n_images}
    assert dom.stdout.count('data-loaded="true"') == n_images and 'data-loaded="false"' not in dom.stdout
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)

    shot = Path(os.environ.get("TUNE_SCHANE_SCREENSHOT") or tmp_path / "report.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    done = _run(browser, tmp_path / "profile-shot", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", url)
    assert shot.is_file(), f"no screenshot written:\n{done.stderr[-2000:]}"
    assert _png_size(shot) == (WIDTH, HEIGHT)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few kB; plots and tables do not
    assert not _console_errors(done.stderr), _console_errors(done.stderr)


def test_the_browser_checks_catch_a_broken_page(tmp_path):
    """The detectors above must fail on a page with a broken image and a script error."""
    browser = _browser()
    page = tmp_path / "broken.html"
    script = re.search(r"<script>.*</script>", _status_script(), re.S).group(0)
    page.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                    f'<span id="img-status"></span><script>console.error("boom"); notDefined();</script>{script}'
                    "</body></html>", encoding="utf-8")
    done = _run(browser, tmp_path / "profile", "--dump-dom", page.resolve().as_uri())
    assert _img_status(done.stdout) == {"loaded": 0, "failed": 1, "total": 1}
    errors = _console_errors(done.stderr)
    assert any("boom" in line for line in errors) and any("Uncaught" in line for line in errors)


def _status_script() -> str:
    from tune_schane.analysis.report import IMG_STATUS_SCRIPT

    return IMG_STATUS_SCRIPT
