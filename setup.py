"""Map the top-level folders onto the ``morphnas`` namespace (``morphism/`` -> ``morphnas.morphism``).

Metadata is in pyproject.toml; only the package list is computed here, so a new subpackage needs
no edit anywhere.
"""
from setuptools import find_packages, setup

TOP = ("morphism", "spaces", "search")

packages = ["morphnas"]
package_dir = {"morphnas": "morphnas_pkg"}
for top in TOP:
    packages.append(f"morphnas.{top}")
    package_dir[f"morphnas.{top}"] = top
    for sub in find_packages(where=top):
        packages.append(f"morphnas.{top}.{sub}")
        package_dir[f"morphnas.{top}.{sub}"] = f"{top}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
