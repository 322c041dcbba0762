"""Task-specific commands (placeholder until the task plugins land)."""

from __future__ import annotations

import argparse


def usage_hint(task_name: str, run_id: str) -> str | None:
    return None


def add_data_commands(parser: argparse.ArgumentParser) -> None:
    parser.add_subparsers(dest="what", required=True)
