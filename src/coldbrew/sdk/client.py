"""A small HTTP client for coldbrew's API, used by the CLI and by Python programs."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from coldbrew.sdk.account import AccountCalls
from coldbrew.sdk.errors import APIError, raise_for
from coldbrew.sdk.package import package

if TYPE_CHECKING:
    from coldbrew.sdk.bulk import MapProgress

DEFAULT_URL = "http://127.0.0.1:8000"
_CHUNK = 1 << 20


def default_api_key() -> str | None:
    """`COLDBREW_API_KEY`, else the admin key file under `COLDBREW_HOME` (default ./.coldbrew)."""
    key = os.environ.get("COLDBREW_API_KEY")
    if key:
        return key
    path = Path(os.environ.get("COLDBREW_HOME", ".coldbrew")) / "admin.key"
    return path.read_text().strip() if path.is_file() else None


class Client(AccountCalls):
    """`Client(url, api_key)`: defaults from `COLDBREW_URL` and `COLDBREW_API_KEY`."""

    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout_s: float = 600.0
    ) -> None:
        self.url = (url or os.environ.get("COLDBREW_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or default_api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)
        self._headers, self._timeout_s = headers, timeout_s

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise APIError(
                0,
                "unreachable",
                f"cannot reach coldbrew at {self.url}: {exc}",
                "start it with `make run` or `coldbrew serve`, or set COLDBREW_URL",
            ) from None
        raise_for(response)
        return response.json() if response.content else None

    # invocation
    def run_sync(
        self, endpoint: str, input: dict[str, Any], wait_ms: int | None = None, **extra: Any
    ) -> dict[str, Any]:
        params = {"wait": wait_ms} if wait_ms is not None else {}
        result: dict[str, Any] = self._call(
            "POST", f"/v2/{endpoint}/runsync", params=params, json={"input": input, **extra}
        )
        return result

    def run(self, endpoint: str, input: dict[str, Any], **extra: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/v2/{endpoint}/run", json={"input": input, **extra}
        )
        return result

    def status(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}")
        return result

    def logs(self, job_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/v1/jobs/{job_id}/logs")["logs"]
        return result

    def cancel(self, endpoint: str, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v2/{endpoint}/cancel/{job_id}")
        return result

    def map(
        self,
        endpoint: str,
        inputs: Iterable[dict[str, Any]],
        *,
        max_in_flight: int = 64,
        journal: Path | str | None = None,
        retry_failed: bool = False,
        progress: bool | Callable[[MapProgress], None] = False,
    ) -> list[dict[str, Any]]:
        """Run every input as an async job of `endpoint`; the results in input order.

        Each result is `{"index", "id", "status", "output"}`, or `{"index", "id", "status",
        "error", "errorDetail"}` for an input whose job did not complete; a failed input does not
        stop the others. At most `max_in_flight` jobs are queued or running at a time. With a
        `journal` file the map resumes after an interruption without running finished inputs
        again (and `retry_failed` runs the failed ones again); the file is kept afterwards.
        `progress=True` draws a progress bar on stderr, or pass a callback. Inputs that are not
        objects or do not match the endpoint's schema raise `MapError` before anything runs.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(
                self.map_async(
                    endpoint,
                    inputs,
                    max_in_flight=max_in_flight,
                    journal=journal,
                    retry_failed=retry_failed,
                    progress=progress,
                )
            )
        raise RuntimeError("Client.map blocks; in async code use `await client.map_async(...)`")

    async def map_async(
        self,
        endpoint: str,
        inputs: Iterable[dict[str, Any]],
        *,
        max_in_flight: int = 64,
        journal: Path | str | None = None,
        retry_failed: bool = False,
        progress: bool | Callable[[MapProgress], None] = False,
    ) -> list[dict[str, Any]]:
        """`map` for async code."""
        from coldbrew.sdk.bulk import run_map
        from coldbrew.sdk.progress import ProgressBar

        bar = ProgressBar() if progress is True else None
        on_progress = progress if not isinstance(progress, bool) else bar
        try:
            async with self.async_http() as http:
                return await run_map(
                    http,
                    endpoint,
                    list(inputs),
                    journal_path=Path(journal) if journal is not None else None,
                    max_in_flight=max_in_flight,
                    retry_failed=retry_failed,
                    on_progress=on_progress,
                )
        finally:
            if bar is not None:
                bar.close()

    def async_http(self) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` with this client's URL, key and timeout (close it after use)."""
        return httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=self._timeout_s)

    # management
    def endpoints(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/endpoints")["endpoints"]
        return result

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/v1/endpoints/{name}")

    def state(self, name: str, key: str | None = None, **params: Any) -> dict[str, Any]:
        """`name`'s state: one entry (with `key`), else a page of entries (`prefix`, `after`,
        `limit`, `values`)."""
        path = f"/v1/endpoints/{name}/state" + (f"/{quote(key, safe='')}" if key else "")
        result: dict[str, Any] = self._call("GET", path, params=params)
        return result

    def delete_state(self, name: str, key: str | None = None) -> dict[str, Any]:
        """Delete one state entry of `name`, or (no `key`) all of them."""
        path = f"/v1/endpoints/{name}/state" + (f"/{quote(key, safe='')}" if key else "")
        result: dict[str, Any] = self._call("DELETE", path)
        return result

    # pipelines (run them with run/run_sync: /v2/{pipeline} is called as an endpoint is)
    def pipelines(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/pipelines")["pipelines"]
        return result

    def pipeline(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/pipelines/{name}")
        return result

    def create_pipeline(self, definition: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/pipelines", json=definition)
        return result

    def delete_pipeline(self, name: str) -> None:
        self._call("DELETE", f"/v1/pipelines/{name}")

    def run_status(self, pipeline: str, run_id: str) -> dict[str, Any]:
        """A pipeline run's status with its stages."""
        result: dict[str, Any] = self._call("GET", f"/v2/{pipeline}/status/{run_id}")
        return result

    def versions(self, name: str, window: str = "1h") -> dict[str, Any]:
        """Every version of `name`: status, traffic share, workers, stats over `window`."""
        result: dict[str, Any] = self._call(
            "GET", f"/v1/endpoints/{name}/versions", params={"window": window}
        )
        return result

    # triggers
    def create_trigger(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a trigger (`POST /v1/triggers`); the body is documented in docs/triggers.md."""
        result: dict[str, Any] = self._call("POST", "/v1/triggers", json=body)
        return result

    def triggers(self) -> list[dict[str, Any]]:
        """Every trigger with its stats: lag, throughput, failures, last error."""
        result: list[dict[str, Any]] = self._call("GET", "/v1/triggers")["triggers"]
        return result

    def trigger(self, id_or_name: str, action: str | None = None) -> dict[str, Any]:
        """One trigger; with `action` "pause", "resume" or "delete", do that first."""
        if action == "delete":
            result: dict[str, Any] = self._call("DELETE", f"/v1/triggers/{id_or_name}")
        elif action is not None:
            result = self._call("POST", f"/v1/triggers/{id_or_name}/{action}")
        else:
            result = self._call("GET", f"/v1/triggers/{id_or_name}")
        return result

    def rollback(self, name: str, to: int | None = None) -> dict[str, Any]:
        """Make version `to` (default: the one before the current) current: `{from, version}`."""
        result: dict[str, Any] = self._call(
            "POST", f"/v1/endpoints/{name}/rollback", json={"to": to}
        )
        return result

    def traffic(
        self,
        name: str,
        weights: Mapping[int, int],
        *,
        max_error_rate: float | None = None,
        max_p99_ms: float | None = None,
        window: str = "60s",
        min_jobs: int | None = None,
        webhook: str | None = None,
    ) -> dict[str, Any]:
        """Split new jobs of `name` by percent per version number (summing to 100); with a
        bound, a canary that crosses it over `window` is taken back to 0% automatically."""
        body: dict[str, Any] = {"weights": {str(n): pct for n, pct in weights.items()}}
        body |= {"maxErrorRate": max_error_rate, "maxP99Ms": max_p99_ms, "window": window}
        if min_jobs is not None:
            body["minJobs"] = min_jobs
        if webhook is not None:
            body["webhook"] = webhook
        result: dict[str, Any] = self._call("PUT", f"/v1/endpoints/{name}/traffic", json=body)
        return result

    def deploy(
        self,
        directory: Path | str,
        progress: Callable[[int, int], None] | None = None,
        *,
        name: str | None = None,
        replace: bool = False,
        on_line: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Package and upload `directory` (skipped if the server has it), then deploy it.

        `progress(sent, total)` is called as the upload goes. `name` deploys the directory's
        one endpoint under that name; `replace` lets it replace an endpoint that came from
        another directory or kind of model (refused otherwise). `on_line` receives the
        deploy's progress lines (its environment's resolve, download, install) as they come.
        """
        data, sha = package(Path(directory))
        if self._http.head(f"/v1/artifacts/{sha}").status_code != 200:

            def chunks() -> Iterator[bytes]:
                for start in range(0, len(data), _CHUNK):
                    yield data[start : start + _CHUNK]
                    if progress:
                        progress(min(start + _CHUNK, len(data)), len(data))

            self._call(
                "PUT",
                f"/v1/artifacts/{sha}",
                content=chunks(),
                headers={"content-type": "application/x-tar"},
            )
        body = {
            "artifact": sha,
            "directory": Path(directory).resolve().name,
            "name": name,
            "replace": replace,
        }
        if on_line is not None:
            return self._deploy_streamed(body, on_line)
        result: list[dict[str, Any]] = self._call("POST", "/v1/deployments", json=body)["endpoints"]
        return result

    def _deploy_streamed(
        self, body: dict[str, Any], on_line: Callable[[str], None]
    ) -> list[dict[str, Any]]:
        """The deploy as NDJSON lines (`api/deploy_stream.py`): progress, then the result."""
        headers = {"accept": "application/x-ndjson"}
        with self._http.stream(
            "POST", "/v1/deployments", json=body, headers=headers, timeout=None
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise_for(response)
            for raw in response.iter_lines():
                if not raw.strip():
                    continue
                item = json.loads(raw)
                if "progress" in item:
                    on_line(item["progress"])
                elif "error" in item:
                    err = item["error"]
                    status = int(item.get("status", 500))
                    raise APIError(status, err["type"], err["message"], err.get("hint", ""))
                else:
                    endpoints: list[dict[str, Any]] = item["endpoints"]
                    return endpoints
        raise APIError(0, "incomplete", "the deploy's answer ended before its result")
