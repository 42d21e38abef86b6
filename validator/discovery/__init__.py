"""Box-free discovery: the heat atlas and its region shares, and SpRAy clusters of per-class maps."""
