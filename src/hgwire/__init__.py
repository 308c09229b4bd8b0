"""hgwire: a Mercurial server and client speaking both of Mercurial's wire protocols.

Layers (imports point down only): cli -> client/server -> commands -> exchange -> wire, repo.
``wire`` is the sans-IO frame protocol core; ``repo`` reads and writes Mercurial repositories.
"""

__version__ = "0.1.0"
