"""chargegw: a Diameter (RFC 6733) stack and multiprocess online charging gateway."""

__version__ = "0.1.0"
