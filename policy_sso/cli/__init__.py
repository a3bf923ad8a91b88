"""The ``policy-sso`` command line: one module per command group."""

from policy_sso.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
