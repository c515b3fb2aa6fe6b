"""Marks the server puts in a request's scope state (``scope["state"]``) to tell the app what
an ASGI message cannot: see ``protocol.py``. The app reads them where it waits."""

# The body has not arrived within the read deadline: the endpoint answers 408.
BODY_LATE = "qwen_mock.body_late"
# The server is stopping: a deliberate delay ends now and the answer goes out.
SERVER_STOPPING = "qwen_mock.server_stopping"
# Not a mark but the server's own ``send`` (the front keeps it): on uvicorn it is bound to
# the request cycle holding the connection, which network faults need.
SERVER_SEND = "qwen_mock.server_send"
