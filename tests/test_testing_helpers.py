"""vidmusic_core.testing works without pytest: only the vidmusic_host fixture needs it (issue 23, point 3)."""
import subprocess
import sys

NO_PYTEST = """
import sys
sys.modules["pytest"] = None  # `import pytest` now raises ImportError, as on a plain `pip install vidmusic`
try:
    import pytest
except ImportError:
    pass
else:
    raise SystemExit("pytest was not blocked")
import vidmusic_core.testing as t
from vidmusic_core.testing import check_component_contract
enc = check_component_contract("encoder", "motion")
codec = check_component_contract("codec", "rvq_mel")
print(type(enc).__name__, type(codec).__name__, hasattr(t, "vidmusic_host"))
"""

BROKEN = """
import sys
sys.modules["pytest"] = None
from dataclasses import dataclass
import torch
from vidmusic_core import Condition, ConditionEncoder, FrameSpec, PluginHost, hookimpl, use_host
from vidmusic_core.testing import check_component_contract

class Wrong(ConditionEncoder):
    @dataclass
    class Config:
        dim: int = 4
    def __init__(self, cfg):
        super().__init__()
        self.frame_spec, self.dim, self.proj = FrameSpec(fps=2.0, size=8), cfg.dim, torch.nn.Linear(3, cfg.dim + 1)
    def frozen_features(self, frames):
        return {"x": frames.local.float().mean(dim=(2, 3))}
    def forward_features(self, features, frames):
        return Condition(tokens=self.proj(features["x"]), mask=frames.local_mask, times=frames.local_times)

class plugin:
    @staticmethod
    @hookimpl
    def register_encoders(register):
        register("wrong", Wrong, Wrong.Config)

host = PluginHost(load_entry_points=False)
host.register_plugin(plugin, name="wrong")
with use_host(host):
    check_component_contract("encoder", "wrong")
"""


def test_contract_check_without_pytest():
    out = subprocess.run([sys.executable, "-c", NO_PYTEST], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["MotionEncoder", "RVQMelCodec", "False"]


def test_contract_check_without_pytest_still_fails_a_broken_component():
    out = subprocess.run([sys.executable, "-c", BROKEN], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "ShapeError" in out.stderr and "Condition.tokens" in out.stderr, out.stderr[-2000:]
