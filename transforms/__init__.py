"""Runner-agnostic Beam transforms of shopstream and the pure functions under them."""
