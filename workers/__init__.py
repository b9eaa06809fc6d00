"""chargegw.workers."""
