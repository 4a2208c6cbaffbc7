"""The model level's commands (``fusion distill ...``)."""

from __future__ import annotations

from pathlib import Path

import typer

from fusion.cli_base import PARAMS, _params, _stage, console

distill_app = typer.Typer(help='Model-level fusion: SFT data, LoRA distillation, evaluation, the gate.', no_args_is_help=True)


@distill_app.command("data")


def distill_data(params: Path = PARAMS) -> None:
    """The SFT sets: the top correct responses per training query, and the label-only baseline."""
    console.print(f"wrote {_stage('sft_data', params)}")


@distill_app.command("train")


def distill_train(params: Path = PARAMS) -> None:
    """LoRA SFT (TRL + PEFT) on the SFT sets; resumes a killed run; registers the distilled model in MLflow."""
    console.print(f"wrote {_stage('distill', params)}")


@distill_app.command("eval")


def distill_eval(params: Path = PARAMS) -> None:
    """Base vs distilled vs label-only on the same held-out queries, with 95% intervals."""
    report = _stage("distill_eval", params)
    if report.get("enabled"):
        p = _params(params)
        console.print(f"metrics: {p.paths.distill_eval}   plot: {p.paths.distill_plot}")


@distill_app.command("promote")


def distill_promote(params: Path = PARAMS) -> None:
    """The gate: the distilled model becomes `champion` only if it beats the champion (or the base) by the margin."""
    d = _stage("promote_distilled", params)
    verdict = "[green]promoted[/green]" if d.get("promoted") else "[yellow]not promoted[/yellow]"
    console.print(f"distilled version {d.get('challenger')}: {verdict}: {d['reason']}")


def mount(root: typer.Typer) -> None:
    """Add this level's commands to the ``fusion`` app."""
    root.add_typer(distill_app, name="distill")
