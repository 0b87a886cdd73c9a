"""Pure domain logic: no I/O, no imports of our other packages."""
