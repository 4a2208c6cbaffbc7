"""Token-level fusion (FusionRoute, arXiv 2601.05106): a router LM with a linear routing head picks an expert at
every decoding step and adds its own (complementary) logits to the expert's.

- :mod:`.vocab`: the shared-vocabulary check the experts and the router must pass at load time.
- :mod:`.router`: the router (a causal LM + the routing head), saved as a normal HF checkpoint plus its head.
- :mod:`.engine`: the batched, left-padded, KV-cached decoding engine (policies ``all`` and ``lazy``).
- :mod:`.stats`: the experts' per-position statistics (gold-token log-prob, greedy token), precomputed once.
- :mod:`.data`, :mod:`.train`: training examples from the platform's artifacts; SFT + CDPO mix training.
- :mod:`.level`: evaluation against the paper's baselines; :mod:`.registry`: the MLflow model.
"""
