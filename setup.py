"""Package layout only (metadata lives in pyproject.toml).

adapters/, benchmarks/ and real_robot/ sit at the top of the repository but install as
lara.adapters, lara.benchmarks and lara.real_robot: PyPI already has top-level packages with
those names, and we never shadow them.
"""

from setuptools import find_namespace_packages, find_packages, setup

ROOTS = {
    "lara": "lara",
    "lara.adapters": "adapters",
    "lara.benchmarks": "benchmarks",
    "lara.real_robot": "real_robot",
}

# folders of package data only (configs/, msg/...), listed as packages so setuptools installs them without its
# "absent from the `packages` configuration" warning blocks
DATA_FOLDERS = {"lara.adapters": ["configs"], "lara.benchmarks": ["study.configs"],
                "lara.real_robot": ["msg", "msg.*"]}

packages, package_dir = [], {}
for name, path in ROOTS.items():
    package_dir[name] = path
    data = find_namespace_packages(path, include=DATA_FOLDERS.get(name, [])) if name in DATA_FOLDERS else []
    packages += [name] + [f"{name}.{sub}" for sub in sorted(set(find_packages(path)) | set(data))]

setup(packages=packages, package_dir=package_dir)
