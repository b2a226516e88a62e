"""Package layout only (metadata lives in pyproject.toml).

adapters/, benchmarks/ and real_robot/ sit at the top of the repository but install as
lara.adapters, lara.benchmarks and lara.real_robot: PyPI already has top-level packages with
those names, and we never shadow them.
"""

from setuptools import find_packages, setup

ROOTS = {
    "lara": "lara",
    "lara.adapters": "adapters",
    "lara.benchmarks": "benchmarks",
    "lara.real_robot": "real_robot",
}

packages, package_dir = [], {}
for name, path in ROOTS.items():
    package_dir[name] = path
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(path)]

setup(packages=packages, package_dir=package_dir)
