"""Administrators' permissions: the ACL catalogue (names.py), which ACLs each operation needs
(operations.py), the built-in roles (roles.py), writing both into the database (seed.py),
who is acting and what they may do (actor.py, check.py, login.py), editing roles (grants.py).

A front end (qvd-admin today; the domain layer and qvd-api next) gets an Actor
(login.authenticate, or actor.local_actor for a run with the node file), calls
check.require(actor, "<object> <verb>", argument keys) before it acts, keeps to
actor.visible_tenant, and records the change with qvd.db.audit.record in the same
transaction.
"""
