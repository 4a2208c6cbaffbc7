"""The token level's commands (``fusion tokenroute ...``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fusion.cli_base import PARAMS, _params, _stage, console

tokenroute_app = typer.Typer(help='Token-level fusion (FusionRoute): a router LM picks an expert at every decoding step and adds its own logits.', no_args_is_help=True)


@tokenroute_app.command("experts")


def tokenroute_experts(params: Path = PARAMS) -> None:
    """Train and register the domain LoRA experts of tokenroute.experts (those with train) (GSM8K / MBPP reference solutions)."""
    console.print(f"wrote {_stage('experts', params)}")


@tokenroute_app.command("data")


def tokenroute_data(params: Path = PARAMS) -> None:
    """Training sequences (SFT examples mixed across domains, preference pairs from the log) and every expert's
    statistics over them (gold-token log-prob and greedy token per position; resumable)."""
    console.print(f"wrote {_stage('tokenroute_data', params)}")


@tokenroute_app.command("train")


def tokenroute_train(params: Path = PARAMS) -> None:
    """Train the router (SFT, then mix training with CDPO) and the no-routing baseline on the stage tokenroute_data's
    output; register the router in MLflow. DVC and the Prefect flow run the stages before it."""
    console.print(f"wrote {_stage('tokenroute_train', params)}")


@tokenroute_app.command("evaluate")


def tokenroute_evaluate(params: Path = PARAMS) -> None:
    """FusionRoute vs each expert alone, FusionRoute after SFT, routing only (the router after SFT), sequence
    selection (judged) and the fine-tuned model without routing, on the held-out queries, with 95% intervals."""
    report = _stage("tokenroute_eval", params)
    if report.get("enabled"):
        p = _params(params)
        console.print(f"metrics: {p.paths.tokenroute_eval}   plots: {p.paths.tokenroute_plot}, "
                      f"{p.paths.tokenroute_routing_plot}")


@tokenroute_app.command("generate")


def tokenroute_generate(
    prompts: list[str] = typer.Argument(None, help="prompts to answer (or --file)"),
    router: str = typer.Option("models:/fusion-tokenroute@challenger",
                               help="a router folder, or a registered version models:/<name>@<alias>|/<version>"),
    file: Path | None = typer.Option(None, help="a text file with one prompt per line"),
    policy: str = typer.Option("lazy", help="lazy: run only the selected experts; all: every expert every token"),
    max_new_tokens: int = typer.Option(128, min=1),
    temperature: float = typer.Option(0.0, min=0.0),
    seed: int = 0,
    stop: list[str] = typer.Option([], help="stop strings (repeatable)"),
    batch_size: int = typer.Option(8, min=1),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per prompt"),
    params: Path = PARAMS,
) -> None:
    """Answer prompts with a trained router and the experts it was trained for (refused if they changed): each
    answer with the share of tokens each expert produced and how often the router changed the argmax token."""
    from fusion.levels.token.level import ExpertMismatchError, generate
    from fusion.levels.token.registry import router_dir
    from fusion.levels.token.vocab import VocabularyMismatchError
    from fusion.models.refs import ModelNotFoundError
    from fusion.tracking import use_registry

    p = _params(params)
    texts = list(prompts or [])
    if file is not None:
        texts += [ln for ln in file.read_text().splitlines() if ln.strip()]
    if not texts:
        console.print("[red]no prompts: give them as arguments or with --file[/red]")
        raise typer.Exit(2)
    try:
        if router.startswith("models:/"):
            use_registry(p.tracking)
        folder = router_dir(router, p.paths.model_cache)
        gens, names = generate(folder, texts, model_cache=p.paths.model_cache, policy=policy,
                               max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, stop=stop,
                               batch_size=batch_size)
    except (ExpertMismatchError, VocabularyMismatchError, ModelNotFoundError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]", markup=False)
        raise typer.Exit(1) from None
    for prompt, g in zip(texts, gens, strict=True):
        shares = dict(zip(names, g.expert_shares(len(names)), strict=True))
        if as_json:
            print(json.dumps({"prompt": prompt, "text": g.text, "tokens": len(g.tokens), "finish_reason":
                              g.finish_reason, "expert_shares": shares, "change_rate": g.change_rate}))
        else:
            console.rule(prompt[:80])
            console.print(g.text, markup=False, highlight=False)
            console.print(f"[dim]{len(g.tokens)} tokens ({g.finish_reason}); experts "
                          + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
                          + f"; router changed the argmax at {g.change_rate:.0%}[/dim]")


def mount(root: typer.Typer) -> None:
    """Add this level's commands to the ``fusion`` app."""
    root.add_typer(tokenroute_app, name="tokenroute")
