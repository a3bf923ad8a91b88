"""policy-sso: a policy-driven single-sign-on engine and OpenID Provider.

The public API: load a tenant, evaluate a request against a client's compiled
policy, judge an access token for an operation (RFC 9470 step-up, for resource
servers), and the types a decision and a diagnostic are made of.
"""

from policy_sso.decision import Decision, Reason, Remedy, evaluate
from policy_sso.diagnostics import Diagnostic
from policy_sso.errors import ConfigError, OAuthError, PolicySSOError
from policy_sso.oidc.step_up import ApiDecision, api_decision
from policy_sso.request import AuthRequest
from policy_sso.tenant import Tenant, check_tenant, load_tenant

__all__ = [
    "ApiDecision",
    "AuthRequest",
    "ConfigError",
    "Decision",
    "Diagnostic",
    "OAuthError",
    "PolicySSOError",
    "Reason",
    "Remedy",
    "Tenant",
    "api_decision",
    "check_tenant",
    "evaluate",
    "load_tenant",
]
