"""The fitted models: the forests, and the one object that holds a whole trained ensemble."""
