"""HTTP resources, one module per endpoint group; each parses, calls policy_sso, renders."""
