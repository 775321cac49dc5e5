"""Metadata lives in pyproject.toml; this file only declares the optional C extension.

``hangar.plumbing._rowhash`` (sha1/crc32/adler32 of many equal-length rows in one call)
speeds up commits of many samples, and checks the stored xxh3 of many samples in one call on
reads (XXH3 from the vendored ``xxhash.h``, BSD-2-Clause); ``optional=True``: where it cannot be compiled the
install still succeeds and hangar uses its pure-Python equivalents.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("hangar.plumbing._rowhash",
                             ["hangar/plumbing/_rowhash.c", "hangar/plumbing/_xxh3_avx2.c",
                              "hangar/plumbing/_xxh3_avx512.c"],
                             depends=["hangar/plumbing/xxhash.h", "hangar/plumbing/_xxh3_copy.h"],
                             extra_compile_args=["-O3"], optional=True)])
