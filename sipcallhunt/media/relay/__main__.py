"""``python -m sipcallhunt.media.relay``: the relay-only mode for external load tools.

Session i relays between local UDP ports B+2i and B+2i+1, each side latched to its first sender,
with exactly the production relay code (the media engine of :mod:`sipcallhunt.runtime.media`).
It lives here, apart from the pure relay rules in ``__init__``, so that those never import the
I/O shell.
"""

from sipcallhunt.runtime.media import relay_only_main

raise SystemExit(relay_only_main())
