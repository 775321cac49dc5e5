"""Hangar's record formats: sample keys, pointers, schemas and the commit tree layout."""
