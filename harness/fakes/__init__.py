"""Fakes of outside services (never of our own code), served over real sockets."""
