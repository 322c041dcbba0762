"""The ``gfssm`` command line: train, tune, score, transcribe, submit, jobs, runs, data.

Ray and MLflow are imported only by the subcommand that needs them, so ``gfssm --help`` and
bad-input errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import gfssm
from gfssm.pipelines import cli_handlers as handlers

EPILOG = """examples:
  gfssm train dna                                 # quickstart on the bundled E. coli genome
  gfssm train dna train.steps=200 model.d_model=64
  gfssm tune dna tune.num_samples=4
  gfssm score genome --model RUN_ID --fasta genome.fa --out scores/
  gfssm submit --address http://HEAD:8265 -- gfssm train dna --config small
  gfssm runs list

Ray: RAY_ADDRESS (or --address) selects a cluster, else a local Ray starts (dashboard on
127.0.0.1). MLflow: --tracking-uri or MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db.
"""


def _common(parser: argparse.ArgumentParser, *, ray: bool = True) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)",
    )
    if ray:
        parser.add_argument(
            "--address", help="Ray cluster address (default: RAY_ADDRESS or a new local Ray)"
        )


def _model_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="model or checkpoint directory, MLflow "
        "run id, runs:/RUN_ID/PATH or models:/NAME/VERSION",
    )


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a task on Ray Train, tracked in MLflow",
        description="Train TASK with an experiment file and key=value overrides "
        "(e.g. train.steps=200 model.d_model=64 task.window=2048).",
    )
    p.add_argument("task", help="task plugin name (e.g. dna, asr)")
    p.add_argument("--config", help="experiment YAML file or bundled name (default: quickstart)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="RUN",
        help="resume the latest run of this experiment, or RUN (id or name)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved experiment and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    _common(p)
    p.set_defaults(handler=handlers.train)


def _add_tune(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="search hyperparameters with Ray Tune (ASHA)",
        description="Tune TASK over a search space; tune.KEY=V overrides the "
        "space file (tune.num_samples=4), other keys the base experiment.",
    )
    p.add_argument("task")
    p.add_argument("--space", help="search-space YAML or bundled name (default: the task's)")
    p.add_argument(
        "--out", help="where to write the best experiment YAML (default: ./TASK-NAME-tuned.yaml)"
    )
    p.add_argument("overrides", nargs="*", metavar="key=value")
    _common(p)
    p.set_defaults(handler=handlers.tune)


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="batch-score genomes or variants on Ray Data")
    kinds = p.add_subparsers(dest="what", required=True, metavar="{genome,variants}")
    g = kinds.add_parser("genome", help="per-base log-likelihood and entropy of a genome")
    _model_arg(g)
    g.add_argument("--fasta", required=True)
    g.add_argument("--regions", help="BED file of regions to score (default: every contig)")
    g.add_argument("--out", required=True, help="output directory (shards, bedGraph, Parquet)")
    g.add_argument("--actors", type=int, default=1, help="model replicas (actor pool size)")
    g.add_argument(
        "--segment",
        type=int,
        default=None,
        help="cut contigs into work items of this many bases (parallelism)",
    )
    _common(g)
    g.set_defaults(handler=handlers.score_genome)
    v = kinds.add_parser("variants", help="log-likelihood ratio of each VCF variant")
    _model_arg(v)
    v.add_argument("--fasta", required=True)
    v.add_argument("--vcf", required=True)
    v.add_argument(
        "--out",
        required=True,
        help="output VCF (.vcf or .vcf.gz); a Parquet table is written beside it",
    )
    v.add_argument("--actors", type=int, default=1)
    _common(v)
    v.set_defaults(handler=handlers.score_variants)
    handlers.add_score_options(g, v)


def _add_speech(sub) -> None:
    t = sub.add_parser("transcribe", help="transcribe audio files on Ray Data")
    _model_arg(t)
    t.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders or manifests")
    t.add_argument("--out", required=True, help="output JSON lines file")
    t.add_argument("--actors", type=int, default=1)
    t.add_argument("--batch-files", type=int, default=16, help="files per work item")
    _common(t)
    t.set_defaults(handler=handlers.transcribe)
    e = sub.add_parser("eval", help="evaluate a model on a manifest")
    kinds = e.add_subparsers(dest="what", required=True, metavar="{asr}")
    a = kinds.add_parser("asr", help="WER/CER of a speech model on a manifest")
    _model_arg(a)
    a.add_argument("--manifest", required=True)
    a.add_argument("--out", help="also write per-utterance results (JSON lines)")
    a.add_argument("--actors", type=int, default=1)
    a.add_argument("--batch-files", type=int, default=16, help="utterances per work item")
    _common(a)
    a.set_defaults(handler=handlers.eval_asr)
    handlers.add_speech_options(t, a)


def _add_jobs(sub) -> None:
    s = sub.add_parser(
        "submit",
        help="submit a gfssm command as a Ray job",
        description="Ship this checkout as a wheel and run a gfssm command on "
        "a Ray cluster: gfssm submit --address http://HEAD:8265 -- gfssm train dna",
    )
    s.add_argument(
        "--address",
        help="dashboard URL (default: RAY_API_SERVER_ADDRESS, an http "
        "RAY_ADDRESS, or http://127.0.0.1:8265)",
    )
    s.add_argument("--wheel", help="ship this wheel instead of building one")
    s.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the job (repeatable)",
    )
    s.add_argument("--tracking-uri", help="MLflow URI for the job (default: the local one)")
    s.add_argument("--no-wait", action="store_true", help="return after submitting")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- gfssm COMMAND ...")
    s.set_defaults(handler=handlers.submit)
    j = sub.add_parser("jobs", help="list, show logs of, or stop Ray jobs")
    acts = j.add_subparsers(dest="action", required=True, metavar="{list,logs,stop}")
    for name, helptext in (
        ("list", "list jobs"),
        ("logs", "print a job's logs"),
        ("stop", "stop a job"),
    ):
        a = acts.add_parser(name, help=helptext)
        if name != "list":
            a.add_argument("job", help="submission id")
        if name == "logs":
            a.add_argument("--follow", "-f", action="store_true")
        a.add_argument("--address")
        a.set_defaults(handler=handlers.jobs)


def _add_runs(sub) -> None:
    r = sub.add_parser("runs", help="tables of MLflow runs")
    acts = r.add_subparsers(dest="action", required=True, metavar="{list,show,compare}")
    lst = acts.add_parser("list", help="recent runs")
    lst.add_argument("--experiment", help="MLflow experiment (default: all)")
    lst.add_argument("--task")
    lst.add_argument("--limit", type=int, default=20)
    show = acts.add_parser("show", help="one run: tags, metrics, params, artifacts")
    show.add_argument("run", help="run id or name")
    cmp_ = acts.add_parser("compare", help="runs side by side")
    cmp_.add_argument("runs", nargs="+", help="run ids or names")
    for p in (lst, show, cmp_):
        _common(p, ray=False)
        p.set_defaults(handler=handlers.runs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gfssm",
        description="GFSSM pipelines: train, tune, score and submit on Ray; runs in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gfssm {gfssm.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_tune(sub)
    _add_score(sub)
    _add_speech(sub)
    _add_jobs(sub)
    _add_runs(sub)
    d = sub.add_parser("data", help="prepare data (FASTA index, GenBank, speech, manifests)")
    handlers.add_data_commands(d)
    c = sub.add_parser("configs", help="list bundled experiments and search spaces")
    c.add_argument("task", nargs="?")
    c.set_defaults(handler=handlers.configs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["data", "synth"]:  # the corpus builder parses its own options
        return handlers.synth(argv[2:])
    parser = build_parser()
    # key=value overrides may come before or after options, which argparse's positionals
    # alone do not allow: collect the leftovers that look like overrides.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args) or 0)
    except handlers.USER_ERRORS as err:
        print(f"gfssm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
