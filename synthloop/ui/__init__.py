"""``synthloop ui``: a web app over a workspace folder (datasets, farm jobs, runs, models, experiments).

The top layer: it reads the workspace through the packages below it, and nothing imports it.
Server-rendered HTML (Jinja2 templates in ``templates/``) plus a little JS shipped in ``static/``
(no CDN). Thumbnails, overlays and dataset indexes are cached under ``ROOT/.synthloop-ui-cache``.
"""
