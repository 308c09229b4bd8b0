"""The HTTP server: ASGI application (v1 ``?cmd=``, capabilities handshake, ``/api/``),
configuration, access control, the demo repository and the ``serve`` command line."""
