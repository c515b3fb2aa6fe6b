"""Cassettes: real exchanges recorded once through a proxy (``proxy.py``), kept on disk in a
form people can read and edit (``cassette.py``, matched by their canonical form,
``canonical.py``), and replayed by the mock (``replay.py``; a strict miss names the nearest
recorded request, ``near_miss.py``)."""
