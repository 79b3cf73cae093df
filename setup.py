"""Build the compiled audio core (``voiceengine._audio``).

The extension is required: a failed compile fails the install. Set
``VOICEENGINE_DEBUG_BUILD=1`` to build a bounds-checked debug variant
(Cython boundscheck/wraparound on, ``-O0 -g``) for fuzzing and CI.
"""

import os
import sys
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("VOICEENGINE_DEBUG_BUILD", "") not in ("", "0")
MSVC = sys.platform == "win32"

if MSVC:
    compile_args = ["/O2"] if not DEBUG else ["/Od", "/Zi"]
else:
    # -fopenmp-simd honours `#pragma omp simd` without linking an OpenMP runtime;
    # no -march=native: runtime dispatch (target_clones) keeps wheels portable.
    compile_args = ["-fopenmp-simd", "-fno-math-errno"]
    compile_args += ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3"]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

extensions = [
    Extension(
        f"voiceengine._audio.{os.path.splitext(os.path.basename(path))[0]}",
        [path],
        include_dirs=["voiceengine/_audio"],
        extra_compile_args=compile_args,
        define_macros=[("VOICEENGINE_DEBUG_BUILD", "1" if DEBUG else "0")],
    )
    for path in sorted(glob("voiceengine/_audio/*.pyx"))
]

if not extensions:
    raise SystemExit("no Cython sources found under voiceengine/_audio")

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        build_dir="build/cython" if DEBUG else None,
        force=DEBUG,
    ),
)
