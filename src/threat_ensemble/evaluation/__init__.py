"""How a trained ensemble is judged: metrics, the gate, plots."""
