"""The Kubernetes files of deploy/kubernetes, rendered as kustomize does (the base and
the gpu overlay, and the base with a replica added by add-replica.sh), checked offline:
every object against Kubernetes' own JSON schemas (the OpenAPI schemas of the API
server, as the kubernetes-validate package bundles them, strict: an unknown field is an
error), and the cross-references the schemas cannot see (the StatefulSets' headless
Services, the claims, the ConfigMaps and Secrets the pods mount, resources on every
container, GPUs on the GPU workers, the coordinator's update strategy and grace period).

Run by CTest (tests/deploy/CMakeLists.txt) in the venv of scripts/deploy-env.sh.
"""
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import kubernetes_validate
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import kustomize_lite  # noqa: E402

SOURCE_DIR = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = SOURCE_DIR / "deploy" / "kubernetes"
# The oldest Kubernetes minor still served by the major clouds, and the newest the
# package has schemas for.
VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]


def schema_errors(objects):
    """One line per object that a version's strict schema rejects (or has no schema for)."""
    errors = []
    for obj in objects:
        for version in VERSIONS:
            name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} (Kubernetes {version})"
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{name}: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{name}: no schema for {obj.get('apiVersion')} {obj.get('kind')}")
    return errors


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects):
    return [(o, o["spec"]["template"]["spec"]) for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def option(command, flag):
    """The value after `flag` in an argv, or None."""
    return command[command.index(flag) + 1] if flag in command else None


class RenderedChecks:
    """Checks of one kustomization's rendering; the test classes name the folder."""

    directory = None

    @classmethod
    def setUpClass(cls):
        cls.objects = kustomize_lite.render(cls.directory)
        cls.header = (KUBERNETES_DIR / "kustomization.yaml").read_text(encoding="utf-8")

    def cluster_file(self):
        config_map = [o for o in by_kind(self.objects, "ConfigMap") if o["metadata"]["name"] == "flover-config"]
        self.assertEqual(len(config_map), 1)
        return yaml.safe_load(config_map[0]["data"]["cluster.yaml"])

    def test_every_object_matches_the_kubernetes_schemas(self):
        self.assertGreater(len(self.objects), 5)
        errors = schema_errors(self.objects)
        self.assertFalse(errors, "\n".join(errors))

    def test_no_key_material(self):
        self.assertEqual(by_kind(self.objects, "Secret"), [], "Secrets are made by kubectl create, never shipped")

    def test_one_coordinator_replaced_not_rolled(self):
        deployments = by_kind(self.objects, "Deployment")
        self.assertEqual([d["metadata"]["name"] for d in deployments], ["flover-coordinator"])
        spec = deployments[0]["spec"]
        self.assertEqual(spec["replicas"], 1)
        self.assertEqual(spec["strategy"]["type"], "Recreate")
        pod = spec["template"]["spec"]
        container = pod["containers"][0]
        self.assertIn("readinessProbe", container)
        self.assertIn("livenessProbe", container)
        drain = option(container["command"], "--drain-timeout")
        self.assertIsNotNone(drain, "the grace period is checked against an explicit --drain-timeout")
        self.assertGreater(pod["terminationGracePeriodSeconds"], float(drain) + 5)

    def test_statefulsets_have_their_headless_services_and_data_plane_policies(self):
        services = {s["metadata"]["name"]: s for s in by_kind(self.objects, "Service")}
        policies = by_kind(self.objects, "NetworkPolicy")
        for statefulset in by_kind(self.objects, "StatefulSet"):
            labels = statefulset["spec"]["template"]["metadata"]["labels"]
            service = services.get(statefulset["spec"]["serviceName"])
            self.assertIsNotNone(service, statefulset["spec"]["serviceName"])
            self.assertEqual(service["spec"].get("clusterIP"), "None", "a StatefulSet's Service is headless")
            self.assertEqual(service["spec"]["selector"], labels)
            self.assertEqual(statefulset["spec"]["selector"]["matchLabels"], labels)
            self.assertTrue(any(p["spec"]["podSelector"]["matchLabels"] == labels and
                                p["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": labels}}]}]
                                for p in policies), f"no data-plane NetworkPolicy for {labels}")

    def test_the_cluster_file_matches_the_statefulsets_and_services(self):
        cluster = self.cluster_file()
        statefulsets = by_kind(self.objects, "StatefulSet")
        self.assertEqual(len(statefulsets), cluster["parallel"]["replicas"])
        replica_numbers = set()
        for statefulset in statefulsets:
            self.assertEqual(statefulset["spec"]["replicas"], cluster["parallel"]["tensor"])
            script = statefulset["spec"]["template"]["spec"]["containers"][0]["args"][0]
            replica = re.search(r"--replica (\d+)", script).group(1)
            self.assertEqual(statefulset["metadata"]["name"], f"flover-replica-{replica}")
            self.assertEqual(statefulset["spec"]["template"]["metadata"]["labels"]["replica"], replica)
            replica_numbers.add(int(replica))
        self.assertEqual(replica_numbers, set(range(cluster["parallel"]["replicas"])))
        self.assertEqual(cluster["security"]["mode"], "curve")
        self.assertGreater(cluster["limits"]["max_client_connections"], 0)

    def test_mounted_volumes_exist_or_are_made_by_the_documented_commands(self):
        claims = {c["metadata"]["name"] for c in by_kind(self.objects, "PersistentVolumeClaim")}
        config_maps = {c["metadata"]["name"] for c in by_kind(self.objects, "ConfigMap")}
        for owner, pod in pod_specs(self.objects):
            where = owner["metadata"]["name"]
            self.assertNotIn("fsGroup", pod.get("securityContext", {}), f"{where}: fsGroup makes keys group-readable")
            volumes = {v["name"]: v for v in pod["volumes"]}
            for container in pod["containers"]:
                for mount in container["volumeMounts"]:
                    self.assertIn(mount["name"], volumes, f"{where}: mount of no volume")
            for volume in volumes.values():
                if "persistentVolumeClaim" in volume:
                    self.assertIn(volume["persistentVolumeClaim"]["claimName"], claims, where)
                elif "secret" in volume:
                    name = volume["secret"]["secretName"]
                    self.assertEqual(volume["secret"]["defaultMode"], 0o400, f"{where}: Secret {name}")
                    self.assertIn(f"kubectl create secret generic {name} ", self.header)
                elif "configMap" in volume:
                    name = volume["configMap"]["name"]
                    self.assertTrue(name in config_maps or f"kubectl create configmap {name} " in self.header,
                                    f"{where}: ConfigMap {name} is neither shipped nor made by a documented command")
                else:
                    self.assertEqual(set(volume), {"name", "emptyDir"}, f"{where}: volume {volume['name']}")

    def test_every_container_has_requests_and_limits(self):
        for owner, pod in pod_specs(self.objects):
            for container in pod["containers"]:
                resources = container.get("resources", {})
                for kind in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        self.assertIn(resource, resources.get(kind, {}),
                                      f"{owner['metadata']['name']}/{container['name']}: {kind}.{resource}")


class Base(RenderedChecks, unittest.TestCase):
    directory = KUBERNETES_DIR

    def test_the_guide_makes_the_keys_as_the_header_does(self):
        guide = (SOURCE_DIR / "docs" / "deploy.md").read_text(encoding="utf-8")
        commands = [line.lstrip("# ").rstrip() for line in self.header.splitlines()
                    if re.match(r"#\s+(for k in|kubectl create|--from-file)", line)]
        self.assertGreaterEqual(len(commands), 7)
        for command in commands:
            self.assertIn(command, guide, "docs/deploy.md and kustomization.yaml's header differ")

    def test_cpu_workers_have_no_gpu(self):
        for statefulset in by_kind(self.objects, "StatefulSet"):
            container = statefulset["spec"]["template"]["spec"]["containers"][0]
            self.assertNotIn("nvidia.com/gpu", container["resources"]["limits"])
            self.assertTrue(container["image"].startswith("flover:"), container["image"])
        self.assertNotIn("workers", self.cluster_file(), "CPU workers: the defaults (device cpu)")


class Gpu(RenderedChecks, unittest.TestCase):
    directory = KUBERNETES_DIR / "gpu"

    def test_every_worker_has_one_gpu_and_the_cuda_image(self):
        statefulsets = by_kind(self.objects, "StatefulSet")
        self.assertTrue(statefulsets)
        for statefulset in statefulsets:
            pod = statefulset["spec"]["template"]["spec"]
            container = pod["containers"][0]
            self.assertEqual(container["resources"]["requests"]["nvidia.com/gpu"], 1)
            self.assertEqual(container["resources"]["limits"]["nvidia.com/gpu"], 1)
            self.assertTrue(container["image"].startswith("flover-cuda:"), container["image"])
            self.assertIn("/dev/shm", [m["mountPath"] for m in container["volumeMounts"]])
            # The base's settings survive the patch.
            self.assertIn("--rank", container["args"][0])
            self.assertIn("/models", [m["mountPath"] for m in container["volumeMounts"]])

    def test_the_cluster_file_puts_every_worker_on_its_pods_gpu(self):
        cluster = self.cluster_file()
        workers = cluster["workers"]
        expected = {(r, k) for r in range(cluster["parallel"]["replicas"]) for k in range(cluster["parallel"]["tensor"])}
        self.assertEqual({(w["replica"], w["rank"]) for w in workers}, expected)
        self.assertEqual({w["device"] for w in workers}, {"cuda:0"}, "one GPU per pod, seen as cuda:0")
        self.assertEqual(cluster["model"]["dtype"], "fp16")

    def test_the_models_volume_is_shared_between_nodes(self):
        (claim,) = by_kind(self.objects, "PersistentVolumeClaim")
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteMany"])


class AddReplica(unittest.TestCase):
    """add-replica.sh on a copy of deploy/kubernetes, then the cluster file raised as the
    docs say: the base and the gpu overlay still render, validate and agree."""

    def test_a_second_replica(self):
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "kubernetes"
            shutil.copytree(KUBERNETES_DIR, copy)
            run = subprocess.run(["bash", str(copy / "add-replica.sh"), "1"], capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            again = subprocess.run(["bash", str(copy / "add-replica.sh"), "1"], capture_output=True, text=True)
            self.assertNotEqual(again.returncode, 0, "a replica is added once")
            for config, workers in ((copy / "config.yaml", ""),
                                    (copy / "gpu" / "config.yaml",
                                     "      - {replica: 1, rank: 0, device: cuda:0}\n"
                                     "      - {replica: 1, rank: 1, device: cuda:0}\n")):
                text = config.read_text()
                self.assertIn("parallel: {replicas: 1, tensor: 2}", text)
                text = text.replace("parallel: {replicas: 1, tensor: 2}", "parallel: {replicas: 2, tensor: 2}")
                if workers:
                    text = text.replace("    kv_cache:", workers + "    kv_cache:")
                config.write_text(text)
            for directory in (copy, copy / "gpu"):
                objects = kustomize_lite.render(directory)
                errors = schema_errors(objects)
                self.assertFalse(errors, "\n".join(errors))
                statefulsets = {s["metadata"]["name"]: s for s in by_kind(objects, "StatefulSet")}
                self.assertEqual(sorted(statefulsets), ["flover-replica-0", "flover-replica-1"])
                second = statefulsets["flover-replica-1"]["spec"]
                self.assertEqual(second["serviceName"], "flover-replica-1")
                self.assertEqual(second["template"]["metadata"]["labels"], {"app": "flover-worker", "replica": "1"})
                self.assertIn("--replica 1 --rank", second["template"]["spec"]["containers"][0]["args"][0])
                self.assertIn("flover-replica-1-data-plane", [p["metadata"]["name"] for p in by_kind(objects, "NetworkPolicy")])
                # The checks of a shipped rendering hold for this one too.
                checks = type("Scaled", (RenderedChecks, unittest.TestCase), {"directory": directory})
                suite = unittest.defaultTestLoader.loadTestsFromTestCase(checks)
                result = unittest.TestResult()
                suite.run(result)
                self.assertEqual([str(f[1]) for f in result.failures + result.errors], [], directory)
                self.assertEqual(result.testsRun, len(suite._tests))


class ValidatorCatchesErrors(unittest.TestCase):
    """The schema check is not vacuous: broken copies of the shipped objects fail it."""

    def test_broken_objects_fail(self):
        objects = kustomize_lite.render(KUBERNETES_DIR)
        (statefulset,) = by_kind(objects, "StatefulSet")
        statefulset["spec"]["replicas"] = "two"
        (deployment,) = by_kind(objects, "Deployment")
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}  # not limits
        (claim,) = by_kind(objects, "PersistentVolumeClaim")
        claim["apiVersion"] = "v2"
        errors = schema_errors([statefulset, deployment, claim])
        self.assertTrue(any("spec.replicas" in e and "'two'" in e for e in errors), errors)
        self.assertTrue(any("Deployment/flover-coordinator" in e and "'limit'" in e for e in errors), errors)
        self.assertTrue(any("no schema for v2 PersistentVolumeClaim" in e for e in errors), errors)


if __name__ == "__main__":
    unittest.main()
