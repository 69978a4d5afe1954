"""Running registered upstream-checkpoint importers (``vidmusic import NAME SOURCE -o OUT``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .config import component_config
from .errors import ConfigError
from .plugins import get_component
from .types import ImportReport


def run_importer(name: str, source: Path, out_dir: Path, options: Sequence[str] = ()) -> ImportReport:
    """Run importer ``name`` on ``source`` with ``key=value`` ``options`` for its config dataclass."""
    from omegaconf import OmegaConf

    comp = get_component("importer", name)
    for o in options:
        if "=" not in o:
            raise ConfigError(f"import option {o!r} is not of the form key=value")
    values = OmegaConf.to_container(OmegaConf.from_dotlist(list(options))) if options else {}
    assert isinstance(values, dict)
    cfg = component_config(comp, values, where=f"importer {name}")
    report = comp.factory(Path(source), Path(out_dir), cfg)
    if not isinstance(report, ImportReport):
        raise TypeError(f"importer {name!r} (plugin {comp.plugin}) returned {type(report).__name__}, not ImportReport")
    return report
