"""Build the compiled audio core (``voiceengine._audio``).

The extension is required: a failed compile fails the install. Set
``VOICEENGINE_DEBUG_BUILD=1`` to build a bounds-checked debug variant
(Cython boundscheck/wraparound on, ``-O0 -g``) for fuzzing and CI.

Build speed (an editable install compiles in a fresh temporary directory every time):

* extensions are cythonized and compiled in parallel (``VOICEENGINE_BUILD_JOBS``,
  default: the CPU count);
* an editable/in-place build reuses an extension already in the source tree when it is
  newer than every input (its .pyx/.pxi/.pxd/.h, this file) and was built with the same
  configuration (recorded in ``build/ext-stamps``), so ``pip install -e ".[test]"`` after
  ``pip install -e .`` does not compile again. ``VOICEENGINE_FORCE_BUILD=1`` compiles anyway.

Progress lines ("voiceengine: compiling ...") show with ``pip install -v -e .``.
"""

import hashlib
import json
import os
import shutil
import sys
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("VOICEENGINE_DEBUG_BUILD", "") not in ("", "0")
MSVC = sys.platform == "win32"

if MSVC:
    compile_args = ["/O2"] if not DEBUG else ["/Od", "/Zi"]
else:
    # -fopenmp-simd honours `#pragma omp simd` without linking an OpenMP runtime;
    # no -march=native: runtime dispatch (target_clones) keeps wheels portable.
    # -Wno-psabi: GCC notes that 32-byte vector arguments changed ABI in 4.6; the kernel's
    # vector helpers are always_inline static functions, never called across objects.
    # -fno-trapping-math: no FP trap is ever enabled in CPython, so the compiler may turn the
    # resampler's float clamps into vector selects (without it gcc leaves the float -> int16
    # store scalar for AVX2); it changes no result (it permits no reassociation, and FMA
    # contraction stays what -ffp-contract says, as before).
    compile_args = ["-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-Wno-psabi"]
    # -g0 (release): Python's default CFLAGS carry -g; debug info of the generated C costs
    # ~25 % of the compile time and nothing at run time
    compile_args += ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-g0"]

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

JOBS = int(os.environ.get("VOICEENGINE_BUILD_JOBS", "0") or 0) or os.cpu_count() or 1
FORCE = os.environ.get("VOICEENGINE_FORCE_BUILD", "") not in ("", "0")
HERE = os.path.dirname(os.path.abspath(__file__))
STAMP_DIR = os.path.join(HERE, "build", "ext-stamps")
# what must match for a built extension to be reused (sources are checked by mtime); the
# compiler environment too: a build with other CFLAGS (or another compiler) is another build
_BUILD_ENV = {name: os.environ.get(name) for name in ("CC", "CFLAGS", "CPPFLAGS", "LDFLAGS", "LDSHARED")}
CONFIG_KEY = hashlib.sha256(
    json.dumps([DEBUG, compile_args, directives, sys.version, sys.platform, sys.implementation.cache_tag, _BUILD_ENV],
               sort_keys=True, default=str).encode()
).hexdigest()


def _inputs(ext: Extension) -> list[str]:
    """Every file the extension's build reads that we control."""
    base = os.path.splitext(os.path.basename(ext.sources[0]))[0]
    pyx = os.path.join(HERE, "voiceengine", "_audio", base + ".pyx")
    shared = glob(os.path.join(HERE, "voiceengine", "_audio", "*.pxi"))
    shared += glob(os.path.join(HERE, "voiceengine", "_audio", "*.pxd"))
    shared += glob(os.path.join(HERE, "voiceengine", "_audio", "*.h"))
    return [pyx, os.path.join(HERE, "setup.py"), *shared]


def _say(text: str) -> None:
    sys.stdout.write(f"voiceengine: {text}\n")  # one write per line: builds run in threads
    sys.stdout.flush()


class BuildExt(build_ext):
    """Parallel build_ext that reuses up-to-date in-tree extensions (see the module doc)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = JOBS

    def _in_tree(self, ext: Extension) -> str:
        filename = self.get_ext_filename(self.get_ext_fullname(ext.name))
        return os.path.join(HERE, filename)

    def _stamp(self, ext: Extension) -> str:
        return os.path.join(STAMP_DIR, ext.name + ".json")

    def _reusable(self, ext: Extension) -> str | None:
        if FORCE or not getattr(self, "_to_tree", False):
            return None
        built = self._in_tree(ext)
        try:
            with open(self._stamp(ext)) as f:
                stamp = json.load(f)
            built_mtime = os.stat(built).st_mtime_ns
            newest_input = max(os.stat(p).st_mtime_ns for p in _inputs(ext))
        except (OSError, ValueError):
            return None
        if stamp.get("config") != CONFIG_KEY or stamp.get("mtime_ns") != built_mtime or built_mtime < newest_input:
            return None
        return built

    def build_extension(self, ext: Extension) -> None:
        target = self.get_ext_fullpath(ext.name)
        reuse = self._reusable(ext)
        if reuse is not None:
            _say(f"{ext.name} is up to date, reusing {os.path.relpath(reuse, HERE)}")
            if os.path.abspath(reuse) != os.path.abspath(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(reuse, target)
            return
        _say(f"compiling {ext.name} ...")
        # not reusable means an input or the configuration changed: distutils' own check
        # (build/lib newer than the .c) knows neither compile flags nor .h/.pxi changes
        self.force = True
        super().build_extension(ext)
        _say(f"compiled {ext.name}")

    def copy_extensions_to_source(self) -> None:
        super().copy_extensions_to_source()
        os.makedirs(STAMP_DIR, exist_ok=True)
        for ext in self.extensions:
            built = self._in_tree(ext)
            if os.path.exists(built):
                with open(self._stamp(ext), "w") as f:
                    json.dump({"config": CONFIG_KEY, "mtime_ns": os.stat(built).st_mtime_ns}, f)

    def run(self) -> None:
        # setuptools clears `inplace` while compiling and copies to the tree afterwards
        self._to_tree = bool(self.inplace)
        super().run()


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        build_dir="build/cython" if DEBUG else None,
        force=DEBUG,
        nthreads=JOBS if JOBS > 1 else 0,
        quiet=True,
    ),
)
