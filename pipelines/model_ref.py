"""``--model``: a model directory, an MLflow run id, ``runs:/ID/PATH`` or ``models:/NAME/V``.

Whatever is given, the answer is a local model directory (``model.pt`` + ``gfssm.json``)
that ``gfssm.tasks.load_model`` reads: run artifacts are downloaded (once per call) and a
pyfunc's wrapped model directory is found inside it.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from gfssm.pipelines.errors import ModelNotFound
from gfssm.tasks.pretrained import META_FILE

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _find_model_dir(root: Path, label: str) -> Path:
    if (root / META_FILE).is_file():
        return root
    found = sorted(p.parent for p in root.rglob(META_FILE))
    if not found:
        raise ModelNotFound(f"{label}: no GFSSM model directory ({META_FILE}) inside")
    return min(found, key=lambda p: len(p.parts))


def resolve_model(
    ref: str,
    *,
    tracking_uri: str | None = None,
    cache: Path | None = None,
    base_dir: Path | None = None,
) -> Path:
    """A local model directory for ``ref`` (see the module docstring); a relative path is
    taken from ``base_dir``. Downloads go into ``cache`` (a new temporary folder when None,
    which the caller then owns)."""
    path = Path(ref).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if path.exists():
        if not path.is_dir():
            raise ModelNotFound(f"--model {ref}: expected a model directory, got a file")
        return _find_model_dir(path, f"--model {ref}")
    is_run_id = bool(_RUN_ID.match(ref))
    if not (is_run_id or ref.startswith(("runs:/", "models:/"))):
        raise ModelNotFound(
            f"--model {ref}: no such directory; expected a model/checkpoint directory, an "
            f"MLflow run id, runs:/RUN_ID/PATH or models:/NAME/VERSION"
        )
    import mlflow

    from gfssm.pipelines.artifacts import BEST_CHECKPOINT_ARTIFACT, PYFUNC_ARTIFACT
    from gfssm.pipelines.tracking import resolve_tracking_uri, tracking_client

    client = tracking_client(tracking_uri)
    uri = ref
    if is_run_id:
        try:
            top = {a.path for a in client.list_artifacts(ref)}
        except Exception as err:
            raise ModelNotFound(
                f"--model {ref}: no such run at {client.tracking_uri} ({err})"
            ) from None
        found = [p for p in (BEST_CHECKPOINT_ARTIFACT, PYFUNC_ARTIFACT) if p in top]
        if not found:
            raise ModelNotFound(
                f"--model {ref}: the run has no {BEST_CHECKPOINT_ARTIFACT}/ or "
                f"{PYFUNC_ARTIFACT}/ artifact (did it finish?); artifacts: {sorted(top)}"
            )
        uri = f"runs:/{ref}/{found[0]}"
    if ref.startswith("models:/"):
        uri = _registered_source(client, ref)
    target = Path(cache or tempfile.mkdtemp(prefix="gfssm-model-"))
    target.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(target), tracking_uri=resolve_tracking_uri(tracking_uri)
        )
    except Exception as err:
        raise ModelNotFound(
            f"--model {ref}: could not fetch {uri} from {client.tracking_uri}: {err}"
        ) from None
    return _find_model_dir(Path(local), f"--model {ref}")


def _registered_version(client, ref: str):
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` -> that registry ModelVersion
    (looked up in the registry of the given tracking URI, not the process default)."""
    body = ref[len("models:/") :]
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, version = body.rsplit("/", 1)
        return client.get_model_version(name, version)
    except ValueError:
        raise ModelNotFound(
            f"--model {ref}: expected models:/NAME/VERSION or models:/NAME@ALIAS"
        ) from None
    except Exception as err:
        raise ModelNotFound(
            f"--model {ref}: not in the registry at {client.tracking_uri} ({err})"
        ) from None


def _registered_source(client, ref: str) -> str:
    """``models:/...`` -> the artifact URI of that version."""
    version = _registered_version(client, ref)
    return client.get_model_version_download_uri(version.name, version.version)


def model_run_id(client, ref: str) -> str | None:
    """The MLflow run a ``--model`` reference (not a folder) comes from: the run id itself,
    ``runs:/ID/...``, or the run a registered version was logged from; None otherwise."""
    if _RUN_ID.match(ref):
        return ref
    if ref.startswith("runs:/"):
        run = ref[len("runs:/") :].split("/", 1)[0]
        return run if _RUN_ID.match(run) else None
    if ref.startswith("models:/"):
        return _registered_version(client, ref).run_id or None
    return None
