"""Tests of the deployment artefacts: Dockerfile, .dockerignore and the k8s/ base."""
