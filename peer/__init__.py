"""chargegw.peer."""
