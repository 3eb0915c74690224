"""The container images' files (deploy/docker): hadolint accepts both Dockerfiles (and
rejects a bad one, so the check is not vacuous), they build with the project's own
scripts into a slim runtime stage, the build context keeps build trees and keys out, and
the images the Kubernetes files run are the tags scripts/build-image.sh makes.

Run by CTest (tests/deploy/CMakeLists.txt) in the venv of scripts/deploy-env.sh, offline.
"""
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import kustomize_lite  # noqa: E402

SOURCE_DIR = Path(__file__).resolve().parents[2]
DOCKER_DIR = SOURCE_DIR / "deploy" / "docker"
DOCKERFILES = [DOCKER_DIR / "Dockerfile", DOCKER_DIR / "Dockerfile.cuda"]
HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path):
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True)


class Dockerfiles(unittest.TestCase):
    def test_hadolint_accepts_them(self):
        for dockerfile in DOCKERFILES:
            run = hadolint(dockerfile)
            self.assertEqual(run.returncode, 0, f"{dockerfile}:\n{run.stdout}{run.stderr}")

    def test_hadolint_rejects_a_bad_dockerfile(self):
        with tempfile.NamedTemporaryFile("w", suffix=".Dockerfile") as bad:
            bad.write("FROM debian\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp\n")
            bad.flush()
            run = hadolint(bad.name)
        self.assertNotEqual(run.returncode, 0, run.stdout)
        for rule in ("DL3006", "DL3008", "DL3015", "DL3003"):
            self.assertIn(rule, run.stdout)

    def test_built_by_the_projects_scripts_into_a_slim_runtime(self):
        for dockerfile in DOCKERFILES:
            text = dockerfile.read_text()
            stages = re.findall(r"^FROM (\S+)", text, re.M)
            self.assertEqual(stages, ["debian:bookworm", "debian:bookworm-slim"], dockerfile)
            for step in ("bash scripts/install-deps.sh", "bash scripts/build.sh", "-DFLOVER_BUILD_TESTS=OFF",
                         "cmake --install build --prefix /opt/flover", "runtime-packages.sh",
                         "COPY --from=build /opt/flover/bin/ /usr/local/bin/"):
                self.assertIn(step, text, dockerfile)
            instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
            for key_file in (".key", "keys/"):
                self.assertNotIn(key_file, instructions, f"{dockerfile}: no key material in an image")
        self.assertIn("-DFLOVER_CUDA=OFF", DOCKERFILES[0].read_text())
        self.assertIn("-DFLOVER_CUDA=ON", DOCKERFILES[1].read_text())

    def test_the_context_leaves_out_build_trees_and_keys(self):
        ignored = (SOURCE_DIR / ".dockerignore").read_text().split()
        for pattern in ("build*", "keys", ".git", "bundle"):
            self.assertIn(pattern, ignored)

    def test_runtime_packages_names_the_packages_of_the_libraries(self):
        run = subprocess.run(["bash", str(DOCKER_DIR / "runtime-packages.sh"), "/bin/ls"],
                             capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("libc6", run.stdout.split())
        missing = subprocess.run(["bash", str(DOCKER_DIR / "runtime-packages.sh"), "/nonexistent"],
                                 capture_output=True, text=True)
        self.assertNotEqual(missing.returncode, 0)

    def test_the_kubernetes_files_run_the_images_build_image_makes(self):
        version = re.search(r"project\(flover VERSION ([0-9.]+)", (SOURCE_DIR / "CMakeLists.txt").read_text()).group(1)
        script = (SOURCE_DIR / "scripts" / "build-image.sh").read_text()
        self.assertIn("tag=${2:-flover:$version}", script)
        self.assertIn("tag=${2:-flover-cuda:$version}", script)
        kubernetes = SOURCE_DIR / "deploy" / "kubernetes"
        for directory, image in ((kubernetes, f"flover:{version}"), (kubernetes / "gpu", f"flover-cuda:{version}")):
            objects = kustomize_lite.render(directory)
            images = {c["image"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")
                      for c in o["spec"]["template"]["spec"]["containers"]}
            self.assertEqual(images, {image}, directory)


if __name__ == "__main__":
    unittest.main()
