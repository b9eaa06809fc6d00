"""chargegw.loadtest."""
