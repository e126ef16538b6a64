"""The embedded demo: a synthetic gallery with known biology and batch effects."""
