"""Infrastructure shared by every package: atomic file writes, and the training-loop pieces
that the tokenizer and W.A.L.T modules have in common."""
