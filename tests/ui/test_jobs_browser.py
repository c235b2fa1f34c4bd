"""The jobs widget in a real browser: a running job's bar advances, Cancel stops it.

Also pins the widget's rendering (a pure function of the job) without a browser.
"""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page, expect

import tests.core.jobs_kinds  # noqa: F401  (registers the test job kinds)
from container import Services
from core.jobs import JobView
from core.principal import SYSTEM
from tests.ui.test_studio_browser import _pick
from tests.waiting import wait_until
from ui.jobs.handlers import job_choices
from ui.jobs.widget import render_job


def test_the_jobs_tab_shows_progress_and_cancels_a_running_job(
    live_server: str,
    services: Services,
    page: Page,
    tmp_path: Path,
) -> None:
    log = tmp_path / "steps.log"
    job = services.jobs.submit(
        "test.steps",
        {"log": str(log), "n": 100, "seconds": 0.3},
        target_type="agent",
        target_id="a1",
    )
    # The picker's labels carry the status the page saw when it loaded: load it once the
    # job runs, so the label below is the one on the page.
    wait_until(
        lambda: services.jobs.get(job.id, principal=SYSTEM).status == "running",
        message="the job to start running",
    )
    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Jobs").click()
    expect(page.locator("#jobs-table")).to_contain_text(job.id)
    label = job_choices([services.jobs.get(job.id, principal=SYSTEM)])[0][0]
    _pick(page, "jobs-picker", label)

    bar = page.locator("#jobs-selected-bar .anima-job")
    expect(bar).to_have_attribute("data-status", "running")
    progress = bar.locator("progress")
    first = int(progress.get_attribute("value") or 0)
    expect(progress).not_to_have_attribute("value", str(first))  # the bar moves by itself
    assert progress.get_attribute("max") == "100"

    page.locator("#jobs-selected-cancel").click()
    expect(bar).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#jobs-selected-cancel")).to_be_hidden()
    view = services.jobs.get(job.id, principal=SYSTEM)
    assert view.status == "cancelled"
    time.sleep(1.0)
    assert log.read_text().count("start") <= view.progress_done + 1  # no step after cancel


def test_render_job_shows_counts_state_and_escapes_messages() -> None:
    now = JobView.model_validate(
        {
            "id": "j1",
            "kind": "k",
            "owner": None,
            "target_type": None,
            "target_id": None,
            "status": "running",
            "progress_done": 3,
            "progress_total": 12,
            "message": "<b>parsing</b>",
            "result": None,
            "error": None,
            "executor_id": "local",
            "created_at": "2026-11-25T10:00:00Z",
            "started_at": None,
            "finished_at": None,
        }
    )
    html = render_job(now)
    assert '<progress max="12" value="3">' in html and "3 / 12 (25%)" in html
    assert "&lt;b&gt;parsing&lt;/b&gt;" in html and "<b>parsing" not in html
    failed = now.model_copy(update={"status": "failed", "error": "disk full"})
    assert 'data-status="failed"' in render_job(failed) and "disk full" in render_job(failed)
    unknown_total = now.model_copy(update={"progress_total": 0})
    assert "<progress></progress>" in render_job(unknown_total)
    assert render_job(None) == ""
