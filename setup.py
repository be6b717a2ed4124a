"""Build step that pyproject.toml cannot express: the harness's shipped configs (config/*.yaml, read by
``dpir validate`` and every command as the base layer) are copied into the package as
``dpir/defaults/``, so an installed wheel works outside the checkout (dpir.config.default_config_path)."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "dpir" / "defaults"
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(Path(__file__).resolve().parent.joinpath("config").glob("*.yaml")):
            shutil.copy2(f, target / f.name)


setup(cmdclass={"build_py": BuildPyWithConfigs})
