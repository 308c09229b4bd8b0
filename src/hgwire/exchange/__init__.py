"""Exchange formats: changegroups, bundle2 and stream clones (spec storage §8-§11).

Byte formats between repository data and streams, with no network code: the transports
and commands above feed readers in and send the iterators of bytes these modules return.
"""
