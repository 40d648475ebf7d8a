"""`nw view`: a read-only web viewer of the store's records (server.py), fed live by the run journal (history.py).

Importing this package is cheap: `nw run` imports only history.py; the server is imported by `nw view` alone.
"""
