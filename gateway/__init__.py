"""chargegw.gateway."""
