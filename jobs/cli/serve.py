"""The ``serve`` command: an export behind a local HTTP server with TF Serving's REST predict API."""

from __future__ import annotations

from typing import Annotated

import typer

from jobs.cli.app import app
from jobs.console import console, quiet_tensorflow


@app.command()
def serve(
    model: Annotated[str | None, typer.Option(
        help="an export folder of --format saved_model (default: $AIP_STORAGE_URI, as Vertex AI sets it)")] = None,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="port (default: $AIP_HTTP_PORT, else 8080; 0 picks a free one)")] = None,
    host: Annotated[str | None, typer.Option(
        help="address to listen on (default 127.0.0.1; 0.0.0.0 when $AIP_HTTP_PORT is set)")] = None,
    name: Annotated[str, typer.Option(help="the model name in /v1/models/NAME:predict")] = "detector",
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="largest request body, in MiB")] = 20.0,
    max_instances: Annotated[int, typer.Option(min=1, help="most images in one request")] = 64,
    max_megapixels: Annotated[float, typer.Option(
        min=0.001, help="largest image, in megapixels (read from its header before decoding)")] = 40.0,
    max_requests: Annotated[int, typer.Option(min=1, help="requests in progress at once; more get 503")] = 64,
    model_calls: Annotated[int, typer.Option(min=1, help="model calls at once; other requests wait")] = 2,
) -> None:
    """Serve an export over HTTP like TF Serving and a Vertex AI endpoint: POST /v1/models/NAME:predict."""
    quiet_tensorflow()
    from jobs.runtime.serve import Limits, Model, ServeConfig, run_server, serve_config

    limits = Limits(max_body_bytes=round(max_body_mb * 2**20), max_instances=max_instances,
                    max_pixels=round(max_megapixels * 1e6), max_requests=max_requests, model_calls=model_calls)
    config = serve_config(model, port, host, name, limits)

    def ready(config: ServeConfig, port: int) -> None:
        base = f"http://{config.host}:{port}"
        console.print(f"serving {config.model} on {base}{config.predict_routes[0]} "
                      f"(health: {', '.join(config.health_routes)}); Ctrl-C stops", highlight=False)

    with console.status(f"loading {config.model}"):
        loaded = Model(config.model)
    run_server(config, ready, loaded)
