"""Builds the portal's one compiled helper in place, the storage scan's directory lister:
``python setup.py build_ext --inplace`` (``make`` does it). The portal is not installed as a
package; the metadata is in ``pyproject.toml``."""

from setuptools import Extension, setup

setup(
    packages=[],
    py_modules=[],
    ext_modules=[
        Extension(
            "storage_app._fs_scan_native",
            ["storage_app/_fs_scan_native.c"],
            extra_compile_args=["-Wall", "-Wextra"],
        )
    ],
)
