"""What every fusion level shares and nothing level-specific: append-only Parquet parts (``parts``), what identifies
a model's outputs (``identity``), one cached, batched, resumable generation loop (``generate``)."""
