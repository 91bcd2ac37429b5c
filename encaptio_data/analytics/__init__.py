"""Analytics: interaction events → validated, consent-filtered daily aggregates → anonymized releases.

The flow, and where each guarantee lives:

* ``aggregate``   one UTC day of raw events, read columnar (SQL → Arrow), validated (bad events are
                  quarantined with a reason, never dropped), filtered by consent/restriction/objection
                  (``privacy.consent.excluded_users``), aggregated per capsule; a day is rebuilt whole.
* ``live``        cache counters for live views and rate limits, reconciled daily with the aggregates.
* ``anonymize``   keyed pseudonyms (HMAC-SHA256, rotating key ids) and k-anonymity by generalization
                  then suppression, with the achieved minimum group size measured, not assumed.
* ``dp``          differentially private releases with OpenDP (bounded contributions, Laplace noise)
                  against a per-dataset, per-period epsilon ledger that refuses overspending.
* ``retention``   raw events past 90 days: aggregated (their day made final), then deleted.
* ``pii``         Presidio pattern recognizers over extracted text and free-text event fields;
                  findings store a keyed hash, never the matched text; ``mask_pii`` for embedding.
* ``export``      k-anonymous exports (CSV, Parquet, JSON) for the CLI.

Subjects whose data may not be processed for analytics contribute nothing anywhere: every
reader goes through ``aggregate.load_events``, which drops them before any computation.
Nothing here imports Dagster; ``assets/analytics.py`` is the glue.
"""
