# Jupyter Server settings of every session, on both back-ends: the Kubernetes session image
# copies this file to /etc/jupyter/, and the local spawner passes it with --config.
#
# The router in front of the session (nginx locally, ingress-nginx on Kubernetes) logs each
# request in with the server's token, so the browser never needs it; JupyterLab would still
# write it into every lab page's configuration, where the page's scripts (and anything a
# notebook's output runs on the portal's origin) could read it. Lab pages get an empty one.
#
# The portal's JupyterLab extension (images/session/labextension: time left, warning, stop,
# "your session ended") finds the portal and its session in the page's configuration: the
# spawner sets JUPYTER_PORTAL_URL and JUPYTER_PORTAL_SESSION_ID (neither is a secret).
import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821  (Jupyter's config loader gives it)


def _page_config(handler: object, page_config: dict) -> dict:
    return {
        **page_config,
        "token": "",
        "jupyterPortalUrl": os.environ.get("JUPYTER_PORTAL_URL", ""),
        "jupyterPortalSessionId": os.environ.get("JUPYTER_PORTAL_SESSION_ID", ""),
    }


c.ServerApp.tornado_settings = {"page_config_hook": _page_config}
