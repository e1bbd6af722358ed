"""Evaluation: running a split (`runner`: batched, resumable, sharded), prediction files (`predictions`),
metrics (`metrics`) and the summary `sevila eval` reports (`summary`)."""
