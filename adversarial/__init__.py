"""Adversarial robustness suites against the gate's own scorers and policies.

Reserved for the robustness issue: torchattacks suites on the differentiable scorers and text-evasion corpora
against the pre-policy. Nothing here is wired into the request flow yet.
"""
