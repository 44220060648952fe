"""Datasets: synthetic (the unit sphere with a teacher network), scikit-learn's digits,
arrays, and NPZ/CSV files."""

from ._dataset import Dataset as Dataset, from_arrays as from_arrays
from ._sources import digits as digits, load as load, sphere as sphere
