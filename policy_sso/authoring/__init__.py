"""The tools a policy author runs in CI: lint, test (cases and coverage), diff and fmt."""
