"""Wire commands: one registry of every command, its arguments and permission.

Each command has a v1 implementation (legacy ``?cmd=`` / ssh line protocol), a v2
implementation (frame protocol), or both. Capabilities are built from the registry, so
what is advertised and what runs cannot drift apart.
"""
