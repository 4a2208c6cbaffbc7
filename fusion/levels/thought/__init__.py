"""Thought-level fusion: reusable templates summarised from the best responses of training queries, retrieved for
new queries of the same task (FusionFactory's thought level), evaluated against zero-shot and few-shot."""
