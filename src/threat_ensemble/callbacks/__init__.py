"""Lightning callbacks: ``run_state`` (the run's own state beside the checkpoints, stop signals)
and ``end_of_fit`` (the steps after the autoencoder, one job each)."""
