"""chargegw.codec.dictionaries."""
