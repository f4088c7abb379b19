"""coldbrew: deploy a model once; it wakes on the first request, scales out, sleeps when idle.

```python
import coldbrew

app = coldbrew.App("demo")

@app.model(max_workers=4)
class Echo:
    def predict(self, text: str) -> dict:
        return {"text": text}
```
"""

from typing import TYPE_CHECKING, Any

from coldbrew.errors import ColdbrewError
from coldbrew.names import Batch
from coldbrew.sdk import state
from coldbrew.sdk.app import App

if TYPE_CHECKING:
    from coldbrew.integrations.webhooks import verify_webhook
    from coldbrew.runtime.weights import load_safetensors
    from coldbrew.sdk.bulk import MapProgress
    from coldbrew.sdk.client import Client
    from coldbrew.sdk.errors import APIError
    from coldbrew.sdk.journal import MapError
    from coldbrew.spec import DeploymentSpec, Scaler

__all__ = [
    "APIError",
    "App",
    "Batch",
    "Client",
    "ColdbrewError",
    "DeploymentSpec",
    "MapError",
    "MapProgress",
    "Scaler",
    "load_safetensors",
    "state",
    "verify_webhook",
]
__version__ = "0.1.0"

# The HTTP client pulls in httpx and the spec pydantic; model code that only declares an App
# should not pay for them in every worker's start-up, so these load on first use.
_LAZY = {
    "APIError": "coldbrew.sdk.errors",
    "Client": "coldbrew.sdk.client",
    "DeploymentSpec": "coldbrew.spec",
    "MapError": "coldbrew.sdk.journal",
    "MapProgress": "coldbrew.sdk.bulk",
    "Scaler": "coldbrew.spec",
    "load_safetensors": "coldbrew.runtime.weights",
    "verify_webhook": "coldbrew.integrations.webhooks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'coldbrew' has no attribute {name!r}")
