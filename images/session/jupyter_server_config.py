# Jupyter Server settings of every session, on both back-ends: the Kubernetes session image
# copies this file to /etc/jupyter/, and the local spawner passes it with --config.
#
# The router in front of the session (nginx locally, ingress-nginx on Kubernetes) logs each
# request in with the server's token, so the browser never needs it; JupyterLab would still
# write it into every lab page's configuration, where the page's scripts (and anything a
# notebook's output runs on the portal's origin) could read it. Lab pages get an empty one.
c = get_config()  # type: ignore[name-defined]  # noqa: F821  (Jupyter's config loader gives it)


def _without_token(handler: object, page_config: dict) -> dict:
    return {**page_config, "token": ""}


c.ServerApp.tornado_settings = {"page_config_hook": _without_token}
