"""The web page in a real headless Chromium against a real ``raas serve`` (two simulated robots).

The server runs as a subprocess on a free port; code comes from an uploaded zip or from a ``git
daemon`` on 127.0.0.1. Screenshots of every stage go to ``test-artifacts/web/``. Needs Debian's
Chromium (``apt-get install -y chromium``) and ``playwright`` (never ``playwright install``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from git_server import running_git_server

playwright_sync = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright")
expect = playwright_sync.expect

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "web"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
JOB_TIMEOUT_MS = 120_000
JOB_URL = re.compile(r"#/jobs/job-[0-9a-f]+$")

CONTROLLER = """\
import gymnasium as gym, numpy as np, gym_raas
env = gym.make("RaasPendulum-v0", max_episode_steps=100)
env.reset()
[env.step(np.array([2.0], dtype=np.float32)) for _ in range(100)]
print("done")
"""

# JavaScript: how many pixels of a canvas differ from its top-left (background) pixel.
COUNT_DRAWN_PIXELS = """(canvas) => {
  const context = canvas.getContext("2d");
  const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
  let drawn = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2] || data[i + 3] !== data[3]) drawn++;
  }
  return drawn;
}"""
CANVAS_FINGERPRINT = """(canvas) => {
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let sum = 0;
  for (let i = 0; i < data.length; i += 7) sum = (sum * 31 + data[i]) % 1000000007;
  return sum;
}"""


@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)


def _chromium() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    pytest.skip("Chromium is not installed: apt-get install -y chromium")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def git_repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_git_server(tmp_path_factory.mktemp("git")) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``raas serve`` as users start it, allowing git sources from the test's git daemon."""
    data_dir = tmp_path_factory.mktemp("raas-data")
    raas = shutil.which("raas", path=str(Path(sys.executable).parent)) or "raas"
    env = {
        **os.environ,
        "RAAS_ALLOWED_GIT_HOSTS": '["*"]',
        "RAAS_ALLOWED_GIT_SCHEMES": '["https", "git"]',
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [raas, "serve", "--data-dir", str(data_dir), "--port", "0", "--robots", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def drain() -> None:
        # Keep reading so that the server never blocks on a full pipe.
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    url = token = ""
    try:
        while not (url and token):
            line = lines.get(timeout=60)
            if line.startswith("RaaS API listening on "):
                url = line.split()[-1]
            elif line.startswith("admin token: "):
                token = line.split()[-1]
    except queue.Empty:
        process.kill()
        pytest.fail("raas serve printed no address and token within 60 s:\n" + "".join(output))
    yield Server(url, token, process, output)
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with playwright_sync.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except playwright_sync.Error as error:
            pytest.skip(f"Chromium at {executable} does not start: {error}")
        yield launched
        launched.close()


@dataclass
class Tab:
    """A page with the console errors and uncaught exceptions it produced."""

    page: Any
    errors: list[str]

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_tab(browser: Any, server: Server, viewport: dict[str, int] = DESKTOP) -> Tab:
    context = browser.new_context(viewport=viewport, base_url=server.url, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    return Tab(page, errors)


def sign_in(tab: Tab, token: str) -> None:
    tab.page.goto("/")
    expect(tab.page.get_by_test_id("sign-in")).to_be_visible()
    tab.page.get_by_test_id("token-input").fill(token)
    tab.page.get_by_test_id("sign-in-button").click()
    expect(tab.page.get_by_test_id("sign-in")).to_be_hidden()
    expect(tab.page.get_by_test_id("who")).to_contain_text("admin")


def controller_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        # The folder's contents, as `cd controller && zip -r ../controller.zip .` makes it.
        bundle.writestr("run.py", CONTROLLER)
    return path


def drawn_pixels(tab: Tab, testid: str) -> int:
    count: int = tab.page.get_by_test_id(testid).evaluate(COUNT_DRAWN_PIXELS)
    return count


def fingerprint(tab: Tab, testid: str) -> int:
    value: int = tab.page.get_by_test_id(testid).evaluate(CANVAS_FINGERPRINT)
    return value


def test_uploaded_job_runs_live_to_success_with_plot_replay_logs_and_downloads(
    browser: Any, server: Server, artifacts: Path, tmp_path: Path
) -> None:
    tab = open_tab(browser, server)
    page = tab.page
    sign_in(tab, server.token)
    tab.shot("01-queue-empty")

    page.get_by_test_id("nav-submit").click()
    page.get_by_test_id("tab-upload").click()
    page.get_by_test_id("upload-archive").set_input_files(str(controller_zip(tmp_path / "controller.zip")))
    tab.shot("02-submit-upload")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    page.get_by_test_id("submit-upload").click()
    expect(page).to_have_url(JOB_URL)
    job_id = page.url.rsplit("/", 1)[-1]

    expect(page.get_by_test_id("live-steps")).to_have_text(re.compile(r"^[1-9][0-9]*$"), timeout=JOB_TIMEOUT_MS)
    assert drawn_pixels(tab, "live-canvas") > 500
    tab.shot("03-job-live")

    expect(page.get_by_test_id("job-phase")).to_have_text("Succeeded", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.__sameDocument === true"), "the job page reloaded instead of updating"
    expect(page.get_by_test_id("job-robot")).to_have_text(re.compile(r"^sim-[12]$"))
    expect(page.get_by_test_id("cancel-button")).to_have_count(0)
    expect(page.get_by_test_id("job-history")).to_contain_text("Running")
    expect(page.get_by_test_id("plot-canvas")).to_be_visible()
    expect(page.get_by_test_id("log-stdout")).to_contain_text("done")
    expect(page.get_by_test_id("download-metadata.json")).to_be_visible()
    assert drawn_pixels(tab, "plot-canvas") > 5000
    assert drawn_pixels(tab, "animation-canvas") > 500
    tab.shot("04-job-succeeded")

    # The slider, the plot's cursor and the animation move together.
    before_plot, before_animation = fingerprint(tab, "plot-canvas"), fingerprint(tab, "animation-canvas")
    page.get_by_test_id("time-slider").fill("60")
    expect(page.get_by_test_id("player-readout")).to_contain_text("t 3.")
    assert fingerprint(tab, "plot-canvas") != before_plot
    assert fingerprint(tab, "animation-canvas") != before_animation
    box = page.get_by_test_id("plot-canvas").bounding_box()
    assert box is not None
    page.get_by_test_id("plot-canvas").click(position={"x": box["width"] * 0.25, "y": box["height"] / 2})
    assert int(page.get_by_test_id("time-slider").input_value()) < 60
    tab.shot("05-replay-cursor")
    page.get_by_test_id("time-slider").fill("0")
    page.get_by_test_id("play-button").click()
    expect(page.get_by_test_id("time-slider")).not_to_have_value("0")
    page.get_by_test_id("play-button").click()  # pause

    with page.expect_download() as download_info:
        page.get_by_test_id("download-metadata.json").click()
    download = download_info.value
    assert download.suggested_filename == "metadata.json"
    metadata = json.loads(Path(download.path()).read_text())
    assert job_id in json.dumps(metadata)

    with page.expect_download() as download_info:
        page.get_by_test_id("nav-robots").click()
        expect(page.get_by_test_id("robots-table").locator("tbody tr")).to_have_count(2)
        page.get_by_test_id("calibration-sim-1").click()
    calibration = json.loads(Path(download_info.value.path()).read_text())
    assert calibration["robot"] == "sim-1"
    expect(page.get_by_test_id("robots")).to_contain_text("sim-2")
    tab.shot("06-robots")

    page.get_by_test_id("nav-queue").click()
    expect(page.get_by_test_id("queue-finished")).to_contain_text(job_id)
    expect(page.get_by_test_id(f"queue-row-{job_id}")).to_contain_text("Succeeded")
    tab.shot("07-queue-finished")
    assert tab.errors == []
    page.context.close()


def test_queue_shows_waiting_jobs_live_and_cancel_stops_one(browser: Any, server: Server, tmp_path: Path) -> None:
    tab = open_tab(browser, server)
    page = tab.page
    sign_in(tab, server.token)
    page.evaluate("window.__sameDocument = true")
    # Three jobs submitted outside the page for two robots: one has to wait, and the queue page
    # must show all three without a reload.
    archive = controller_zip(tmp_path / "controller.zip").read_bytes()
    job_ids = []
    for _ in range(3):
        response = page.request.post(
            "/api/v1/jobs/upload",
            headers={"Authorization": f"Bearer {server.token}"},
            multipart={"archive": {"name": "controller.zip", "mimeType": "application/zip", "buffer": archive}},
        )
        assert response.status == 201, response.text()
        job_ids.append(response.json()["id"])
    for job_id in job_ids:
        expect(page.get_by_test_id(f"queue-row-{job_id}")).to_be_visible()
    waiting = page.get_by_test_id("waiting-table").locator("tbody tr").first
    expect(waiting).to_contain_text("1")  # its queue position
    tab.shot("08-queue-live")

    waiting.locator("a").first.click()
    expect(page).to_have_url(JOB_URL)
    page.get_by_test_id("cancel-button").click()
    expect(page.get_by_test_id("job-phase")).to_have_text("Cancelled")
    expect(page.get_by_test_id("cancel-button")).to_have_count(0)
    tab.shot("09-job-cancelled")

    page.get_by_test_id("nav-queue").click()
    for job_id in job_ids:
        expect(page.get_by_test_id("queue-finished")).to_contain_text(job_id, timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.__sameDocument === true")
    assert tab.errors == []
    page.context.close()


def test_a_failing_controller_shows_its_failure_class_and_traceback(
    browser: Any, server: Server, tmp_path: Path
) -> None:
    archive = tmp_path / "broken.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("run.py", "raise RuntimeError('controller exploded')\n")
    tab = open_tab(browser, server)
    page = tab.page
    sign_in(tab, server.token)
    page.get_by_test_id("nav-submit").click()
    page.get_by_test_id("tab-upload").click()
    page.get_by_test_id("upload-archive").set_input_files(str(archive))
    page.get_by_test_id("submit-upload").click()
    expect(page).to_have_url(JOB_URL)
    expect(page.get_by_test_id("job-phase")).to_have_text("Failed", timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("job-failure-class")).to_have_text("UserError")
    expect(page.get_by_test_id("log-stderr")).to_contain_text("controller exploded")
    tab.shot("10-job-failed")
    assert tab.errors == []
    page.context.close()


def test_git_form_shows_why_a_repository_cannot_run_before_submitting(
    browser: Any, server: Server, git_repos: Any
) -> None:
    git_repos.publish("pendulum", {"run.py": CONTROLLER})
    url = git_repos.url("pendulum")
    tab = open_tab(browser, server)
    page = tab.page
    sign_in(tab, server.token)
    page.get_by_test_id("nav-submit").click()

    page.get_by_test_id("git-url").fill(url)
    page.get_by_test_id("git-ref").fill("no-such-branch")
    page.get_by_test_id("submit-git").click()
    expect(page.get_by_test_id("check-status")).to_contain_text("✗")
    expect(page.get_by_test_id("check-status")).to_contain_text("no-such-branch")
    assert "#/submit" in page.url
    tab.shot("11-submit-git-bad-ref")

    page.get_by_test_id("git-ref").fill("main")
    page.get_by_test_id("git-entrypoint").fill("missing.py")
    page.get_by_test_id("submit-git").click()
    expect(page.get_by_test_id("check-status")).to_contain_text("missing.py")
    expect(page.get_by_test_id("check-status")).to_contain_text("✗")
    assert "#/submit" in page.url

    page.get_by_test_id("git-entrypoint").fill("run.py")
    page.get_by_test_id("submit-git").click()
    expect(page).to_have_url(JOB_URL)
    expect(page.get_by_test_id("job-phase")).to_be_visible()
    tab.shot("12-git-job")
    assert tab.errors == []
    page.context.close()


def test_a_wrong_token_shows_the_sign_in_box_and_a_token_link_signs_in(browser: Any, server: Server) -> None:
    tab = open_tab(browser, server)
    page = tab.page
    page.goto("/")
    page.get_by_test_id("token-input").fill("raas_wrong_token")
    page.get_by_test_id("sign-in-button").click()
    expect(page.get_by_test_id("sign-in-error")).to_be_visible()
    expect(page.get_by_test_id("sign-in")).to_be_visible()
    tab.shot("13-wrong-token")

    # A stored token that the server no longer accepts sends the user back to the sign-in box.
    page.evaluate("localStorage.setItem('raas.token', 'raas_revoked_token')")
    page.goto("/#/robots")
    page.reload()
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("sign in again")
    expect(page.get_by_test_id("robots")).to_have_count(0)

    # The link the server prints signs in once and leaves no token in the address.
    page.goto(f"/#token={server.token}")
    expect(page.get_by_test_id("sign-in")).to_be_hidden()
    expect(page.get_by_test_id("who")).to_contain_text("admin")
    assert "token" not in page.url
    # The browser reports each 401 answer as a console error; nothing else may appear.
    assert [error for error in tab.errors if "401" not in error] == []
    page.context.close()


def test_phone_layout_fits_the_screen(browser: Any, server: Server, tmp_path: Path) -> None:
    tab = open_tab(browser, server, PHONE)
    page = tab.page
    sign_in(tab, server.token)
    archive = controller_zip(tmp_path / "controller.zip")
    response = page.request.post(
        "/api/v1/jobs/upload",
        headers={"Authorization": f"Bearer {server.token}"},
        multipart={"archive": {"name": "c.zip", "mimeType": "application/zip", "buffer": archive.read_bytes()}},
    )
    job_id = response.json()["id"]
    page.goto(f"/#/jobs/{job_id}")
    expect(page.get_by_test_id("job-phase")).to_have_text("Succeeded", timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("plot-canvas")).to_be_visible()
    assert drawn_pixels(tab, "plot-canvas") > 2000
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the job page is {overflow} px wider than a phone screen"
    tab.shot("14-phone-job")
    for route, name in (("#/", "15-phone-queue"), ("#/submit", "16-phone-submit"), ("#/robots", "17-phone-robots")):
        page.goto(f"/{route}")
        page.wait_for_timeout(500)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{route} is {overflow} px wider than a phone screen"
        tab.shot(name)
    assert tab.errors == []
    page.context.close()
