"""Human- and machine-readable reports about a model and its builds."""
