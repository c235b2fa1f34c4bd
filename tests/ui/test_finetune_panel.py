"""The fine-tune panel: its rendering (pure functions of the service's views) and, in a real
browser, a trained agent's report, loss curve and versions with Activate and Roll back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from agents.finetune.schema import (
    AdapterView,
    DataSummary,
    EvalReport,
    FinetuneSettings,
    ModelScores,
    RunMetrics,
    RunView,
    SampleReply,
)
from core.principal import SYSTEM
from tests.agents.finetune_world import FinetuneWorld
from tests.servers import serve_app
from tests.ui.test_studio_browser import MODEL_TIMEOUT_MS, _pick
from ui.panels.finetune.handlers import (
    bounds,
    loss_frame,
    render_report,
    render_summary,
    version_rows,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _report(before: float, after: float, style: tuple[float, float]) -> EvalReport:
    return EvalReport(
        before=ModelScores(perplexity=before, style=style[0]),
        after=ModelScores(perplexity=after, style=style[1]),
        style_reference=0.8,
        held_out_dialogues=4,
        held_out_tokens=120,
        perplexity_change=(after - before) / before,
        samples=[
            SampleReply(prompt="<hi>", reference="Arr!", before="Hello.", after="Arr, matey!")
        ],
    )


def _run(report: EvalReport | None, stage: str = "ready") -> RunView:
    return RunView(
        id="r1",
        agent_id="a1",
        version=3,
        adapter_name="brine-v3-r1",
        stage=stage,  # type: ignore[arg-type]
        base_model="bundled:smollm2",
        settings=FinetuneSettings(),
        data=DataSummary(examples=9, by_source={}, replies=9, train=7, held_out=2, min_examples=8),
        metrics=RunMetrics(eval=report),
        job=None,
        created_at=NOW,
        updated_at=NOW,
    )


def test_the_report_shows_before_and_after_and_a_recommendation() -> None:
    good = render_report(_run(_report(40.0, 20.0, (0.2, 0.6))))
    assert "| perplexity (lower is better) | 40.00 | 20.00 (-50 %) |" in good
    assert "0.20 | 0.60" in good and "your own replies: 0.80" in good
    assert "fits your character better" in good
    assert "&lt;hi&gt;" in good and "<hi>" not in good  # creator text is escaped
    worse = render_report(_run(_report(20.0, 30.0, (0.5, 0.4))))
    assert "did not clearly improve" in worse
    assert "appears here when training ends" in render_report(_run(None, "training"))
    assert render_report(None).startswith("No fine-tune yet")


def test_versions_summary_and_sliders_follow_the_schema() -> None:
    adapter = AdapterView(
        name="brine-v1-x",
        agent_id="a1",
        version=1,
        source="trained",
        run_id="r1",
        base_model="bundled:smollm2",
        base_model_name="SmolLM2",
        compatible=False,
        active=True,
        size_bytes=10,
        eval=_report(40.0, 20.0, (0.2, 0.6)),
        created_at=NOW,
    )
    assert version_rows([adapter]) == [
        [1, "brine-v1-x", "✓", "40.0 → 20.0", "0.20 → 0.60", "trained", "SmolLM2 (does not fit)"]
    ]
    summary = DataSummary(
        examples=3,
        by_source={"examples": 2, "greetings": 1, "chats": 0},
        replies=3,
        train=1,
        held_out=2,
        min_examples=8,
        notes=["needs <more>"],
    )
    assert "At least 8 are needed" in render_summary(summary)
    assert "&lt;more&gt;" in render_summary(summary)
    assert bounds("lora_r") == (1, 256) and bounds("learning_rate") == (0, 1e-2)
    assert list(loss_frame(None).columns) == ["step", "loss"]


@pytest.fixture
def world_server(finetune_world: FinetuneWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app on a real port over the session's trained world (left open when it stops)."""
    from app import create_app

    monkeypatch.setattr(finetune_world.services, "close", lambda: None)
    with serve_app(create_app(services=finetune_world.services)) as url:
        yield url


@pytest.mark.model
@pytest.mark.browser
def test_the_panel_shows_a_trained_run_and_switches_versions(
    world_server: str,
    finetune_world: FinetuneWorld,
    page: Page,
) -> None:
    world, fin = finetune_world, finetune_world.services.finetune
    fin.deactivate(world.robot.id, principal=SYSTEM)
    name = world.robot_v1.adapter_name
    page.goto(f"{world_server}/ui/")
    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    _pick(page, "agent-select", f"{world.robot.name} · {world.robot.id[:8]}")
    page.locator("#agent-tab-finetune-button").click()  # the editor's Fine-tune tab
    report = page.locator("#ft-report")
    expect(report).to_contain_text("perplexity (lower is better)", timeout=MODEL_TIMEOUT_MS)
    expect(page.locator("#ft-versions")).to_contain_text(name)
    expect(page.locator("#ft-loss")).to_be_visible()

    page.locator("#ft-activate-run").click()
    expect(page.locator("#ft-status")).to_contain_text(f"{name} is active")
    assert world.services.agents.get_agent(world.robot.id).adapter == name
    page.locator("#ft-rollback").click()
    expect(page.locator("#ft-status")).to_contain_text("now uses the base model")
    assert world.services.agents.get_agent(world.robot.id).adapter is None

    page.locator("#ft-check").click()
    expect(page.locator("#ft-summary")).to_contain_text("11 dialogues")
