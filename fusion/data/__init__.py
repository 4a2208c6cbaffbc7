"""Level 1, data: the query table, collecting a scored routing log from the candidate pool, and validating it."""
