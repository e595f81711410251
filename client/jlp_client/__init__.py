"""jlp: the Jupyter launcher portal's command-line client and Python API.

from jlp_client import Client

portal = Client("https://portal.example.org", "jlp_...")
session = portal.launch("ecmwf-dss", wait=True)
print(session.url)
"""

__version__ = "0.1.0"

from jlp_client.api import ApiError, Client, Session  # noqa: E402
from jlp_client.config import NotLoggedIn  # noqa: E402

__all__ = ["ApiError", "Client", "NotLoggedIn", "Session", "__version__"]
