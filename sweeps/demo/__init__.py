"""The demo world: a tiny, locally trained model family that reproduces the BAI setting."""
