"""Readers for the deployment artefacts, shared by the tests in this package."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

Manifest = dict[str, Any]


def load_yaml_documents(path: Path) -> list[Manifest]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs), f"{path.name}: not a mapping"
    return docs


def manifest_files() -> list[Path]:
    """Every YAML file of the base except kustomization.yaml itself."""
    return sorted(p for p in K8S.glob("*.y*ml") if p.name != "kustomization.yaml")


def kustomization() -> Manifest:
    [doc] = load_yaml_documents(K8S / "kustomization.yaml")
    return doc


def find(kind: str, name: str) -> Manifest:
    found = [
        doc
        for path in manifest_files()
        for doc in load_yaml_documents(path)
        if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind}/{name} in k8s/, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON-array (exec) form of CMD, ENTRYPOINT or HEALTHCHECK ... CMD."""
        start = self.args.index("[")
        value = json.loads(self.args[start:])
        assert isinstance(value, list)
        assert all(isinstance(v, str) for v in value)
        return value


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions, grouped by stage (each list starts with its FROM).

    Enough of the Dockerfile syntax for these tests: comments, line continuations and
    instructions; anything before the first FROM (ARG, the syntax directive) is dropped.
    """
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        pending += line
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    stages: list[list[Instruction]] = []
    for text in logical:
        keyword, _, args = text.partition(" ")
        instruction = Instruction(keyword.upper(), re.sub(r"\s+", " ", args).strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def final_stage() -> list[Instruction]:
    return dockerfile_stages()[-1]


def image_user() -> tuple[int, int]:
    """The numeric UID and GID of the final stage's last USER instruction."""
    users = [i.args for i in final_stage() if i.keyword == "USER"]
    assert users, "the final stage has no USER: the image would run as root"
    match = re.fullmatch(r"(\d+):(\d+)", users[-1])
    assert match, f"USER {users[-1]!r} is not numeric UID:GID (runAsNonRoot needs numbers)"
    return int(match.group(1)), int(match.group(2))
