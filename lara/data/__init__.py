"""Data for LARA training: the LIBERO HDF5 format (writer + reader) and action normalisation statistics."""

from .config import LiberoDataConfig
from .dataset import Episode, LiberoDataset
from .libero_hdf5 import LiberoFileError, LiberoHDF5Writer, inspect_libero_hdf5, open_libero_hdf5
from .sampler import EpochShuffleSampler
from .statistics import (
    ArrayStatistics,
    DatasetStatistics,
    load_statistics,
    normalize_actions,
    save_statistics,
    unnormalize_actions,
)

__all__ = [
    "ArrayStatistics",
    "DatasetStatistics",
    "Episode",
    "EpochShuffleSampler",
    "LiberoDataConfig",
    "LiberoDataset",
    "LiberoFileError",
    "LiberoHDF5Writer",
    "inspect_libero_hdf5",
    "load_statistics",
    "normalize_actions",
    "open_libero_hdf5",
    "save_statistics",
    "unnormalize_actions",
]
