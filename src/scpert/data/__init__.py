"""Data contract, synthetic world, readers, preprocessing, splits and pairing."""
