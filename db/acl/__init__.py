"""Administrators' permissions: the ACL catalogue (names.py), which ACLs each operation needs
(operations.py), the built-in roles (roles.py), writing both into the database (seed.py),
who is acting and what they may do (actor.py, check.py), editing roles (grants.py)."""
