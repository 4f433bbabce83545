"""A local stand-in for the part of the Kubernetes Pods API hodei uses."""

from tests.k8s_fake.server import FakeKubernetes

__all__ = ["FakeKubernetes"]
