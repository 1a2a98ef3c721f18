"""soc2infra admission and audit operator (Kopf).

Validating admission for every Kubernetes kind the policy pack targets, cluster waivers
(``SOC2Waiver``), a background audit writing ``wgpolicyk8s.io/v1alpha2`` PolicyReports, and
evidence records committed to the ledger before each admission response. Run it with
``soc2infra-operator`` (:func:`soc2infra_operator.main.main`); see ``docs/operator.md``.

Layers: ``main`` > ``handlers`` (Kopf) > ``runtime`` > ``audit``/``evidence``/``webhookconfig``/
``install``/``kube`` > ``admission`` > ``waivers``/``settings``; the pure modules (``admission``,
``waivers``, ``settings``) never import Kopf or the Kubernetes client.
"""

__all__ = ["main"]


def main() -> int:
    """Run the ``soc2infra-operator`` command line."""
    from soc2infra_operator.main import main as _main

    return _main()
