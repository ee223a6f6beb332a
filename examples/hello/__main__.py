"""``python -m examples.hello``: serve the example until SIGTERM or SIGINT."""

import sprockets_http
from examples.hello import make_app

sprockets_http.run(make_app)
