"""`camgate serve`: the gate that runs itself on MLflow model-registry webhooks.

MLflow (3.x, SQL backends) POSTs a signed ``model_version.created`` event; the service verifies it
(:mod:`validator.serve.signature`), queues the version in a SQLite file (:mod:`validator.serve.queue`), audits
it in a subprocess (:mod:`validator.serve.worker`, :mod:`validator.serve.job`) and writes the verdict onto the
version as tags, then the deploy alias on PASS only. Config: :mod:`validator.serve.config`.
"""
