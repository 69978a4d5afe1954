"""vidmusic core: the plugin API, data contracts, config and I/O of the vidmusic framework.

Plugins import only what this module exports.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .checkpoint import (atomic_path, load_component, load_state_strict, load_weights, path_field, save_component,
                         save_weights)
from .data.toy_soundfont import fixed_soundfont_path
from .data.cache import ShardStore
from .encoders.motion import video_cuts
from .layouts.prefix import PrefixConfig, PrefixLayout
from .errors import (
    CheckpointError,
    ConfigError,
    DuplicateComponentError,
    PluginError,
    ShapeError,
    UnknownComponentError,
    VidmusicError,
)
from .config import Preset
from .hookspecs import hookimpl
from .interrupt import GenerationControl, Interrupted, controlled, generation_part, generation_step
from .model_dir import MODEL_INDEX, VidMusicPipeline, write_model_index
from .plugins import Component, PluginHost, Registry, build, get_component, get_host, get_registry, use_host
from .progress import progress_bar
from .sampling import merge_forced
from .video import write_video
from .components import (
    Backbone,
    ConditionEncoder,
    LatentCodec,
    Metric,
    MusicBackbone,
    MusicCodec,
    SequenceLayout,
    SymbolicCodec,
    TokenLM,
    Visualizer,
)
from .song import Section, SongAnalysis
from .types import (
    CLIP_MEAN,
    CLIP_STD,
    IGNORE_INDEX,
    BackboneInput,
    BackboneOutput,
    Condition,
    FrameSpec,
    Frames,
    GenerationRequest,
    ImportReport,
    MusicLatents,
    MusicOutput,
    MusicTokens,
    SamplingConfig,
    check_shapes,
    normalize_frames,
    select_positions,
)

try:
    __version__ = version("vidmusic")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "GenerationControl", "Interrupted", "controlled", "generation_part", "generation_step",
    "CLIP_MEAN", "CLIP_STD", "IGNORE_INDEX", "Backbone", "BackboneInput", "BackboneOutput", "CheckpointError",
    "Component", "Condition", "ConditionEncoder", "ConfigError", "DuplicateComponentError", "FrameSpec", "Frames",
    "GenerationRequest", "ImportReport", "LatentCodec", "Preset", "PrefixConfig", "PrefixLayout", "ShardStore", "write_video", "MODEL_INDEX", "VidMusicPipeline", "write_model_index", "Metric", "MusicBackbone", "MusicCodec", "MusicLatents",
    "MusicOutput", "MusicTokens", "PluginError", "PluginHost", "Registry", "SamplingConfig", "SymbolicCodec",
    "TokenLM", "Visualizer", "Section", "SongAnalysis", "SequenceLayout", "ShapeError", "UnknownComponentError", "VidmusicError", "__version__", "atomic_path",
    "build", "check_shapes", "fixed_soundfont_path", "get_component", "get_host", "get_registry", "hookimpl", "load_component",
    "load_state_strict", "load_weights", "merge_forced", "normalize_frames", "path_field", "progress_bar", "select_positions", "save_component", "save_weights", "use_host", "video_cuts",
]
