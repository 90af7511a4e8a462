"""``--web [HOST:]PORT``: the live view of a running box, a page a person opens in a browser.

A sink of the one frame loop: it reads each camera's live state (:mod:`runtime.camera_state`),
never the other way round, so the loop pays nothing for it but keeping each camera's latest
frame. Frames for viewers are encoded on the server's own thread at most ``--web-fps`` a second per
camera and only while someone watches (:mod:`runtime.web.feeds`); who may read is decided in
:mod:`runtime.web.access`; the routes and the server are in :mod:`runtime.web.server`; the page is
plain HTML, CSS and JavaScript in ``runtime/web/static/`` (no CDN, no build step). aiohttp is
imported only when ``--web`` is given (the ``box`` extra).
"""
