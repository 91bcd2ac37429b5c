"""Governance: the data catalog (``catalog``) and the compliance report (``compliance``).

Plain Python over the model's declarations and the stores; ``assets/governance.py`` is the
Dagster glue and ``cli_governance.py`` the commands.
"""
