"""``hgwire-hg``: an ``hg``-compatible entry point for SSH remotes (spec §6.1).

A Mercurial client runs ``<remotecmd> -R <path> serve --stdio`` on the remote host;
with ``--remotecmd hgwire-hg`` (or ``ui.remotecmd``) that command is this one. It
accepts ``-R PATH serve --stdio`` and ``serve --stdio -R PATH`` (``--repository`` too,
``~`` expanded) and nothing else: like 6.0 and 7.2 it refuses any other command line
as a potentially unsafe invocation (exit 255).
"""

from __future__ import annotations

import os
import sys


def parse(argv: list[str]) -> str | None:
    """The repository path of a ``serve --stdio`` command line, or None."""
    path: str | None = None
    words: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-R", "--repository", "--repo"):
            if path is not None or i + 1 >= len(argv):
                return None
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--repository="):
            if path is not None:
                return None
            path = arg.split("=", 1)[1]
        else:
            words.append(arg)
        i += 1
    if words != ["serve", "--stdio"] or not path or path.startswith("--"):
        return None
    return os.path.expanduser(path)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = parse(args)
    if path is None:
        sys.stderr.write(f"abort: potentially unsafe serve --stdio invocation: {args!r}\n")
        sys.stderr.flush()
        return 255
    from hgwire.server.sshserver import main_stdio

    return main_stdio(path)


if __name__ == "__main__":
    sys.exit(main())
