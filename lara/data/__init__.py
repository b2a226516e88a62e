"""Data for LARA training: one core cutting episodes of any source (LIBERO HDF5, LeRobot, video folders)
into samples, the LIBERO HDF5 writer, and action normalisation statistics.

Names are imported on first use, so `from lara.data import LiberoHDF5Writer` (used by the demo generators and
the robot recorder) needs only h5py and numpy, not torch.
"""

from importlib import import_module

_EXPORTS = {
    "LiberoDataConfig": "config",
    "SourceSpec": "config",
    "Episode": "episodes",
    "EpisodeSource": "episodes",
    "SourceError": "episodes",
    "detect_format": "episodes",
    "open_source": "episodes",
    "EpisodeDataset": "dataset",
    "LiberoDataset": "dataset",
    "LeRobotSource": "lerobot",
    "LeRobotWriter": "lerobot_writer",
    "libero_to_lerobot": "convert",
    "lerobot_to_libero": "convert",
    "LiberoFileError": "libero_hdf5",
    "LiberoHDF5Writer": "libero_writer",
    "inspect_libero_hdf5": "libero_hdf5",
    "open_libero_hdf5": "libero_hdf5",
    "EpochShuffleSampler": "sampler",
    "ArrayStatistics": "statistics",
    "DatasetStatistics": "statistics",
    "load_statistics": "statistics",
    "normalize_actions": "statistics",
    "save_statistics": "statistics",
    "unnormalize_actions": "statistics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return __all__
