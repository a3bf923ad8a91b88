"""Surface forms of the policy language: the DSL (lark) and YAML (JSON Schema)."""
